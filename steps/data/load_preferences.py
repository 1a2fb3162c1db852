from typing import Annotated

import pandas as pd
from zenml import step

from finetune.data.preferences import load_preference_data
from finetune.params import PreferenceDataParams
from steps.metadata import record


@step
def load_preferences(
    data: PreferenceDataParams, source_fingerprints: dict[str, str]
) -> tuple[
    Annotated[pd.DataFrame, "train_pairs"],
    Annotated[pd.DataFrame, "test_pairs"],
    Annotated[pd.DataFrame, "preference_texts"],
]:
    """Read preference pairs (JSONL pairs or HH-RLHF transcripts) and split them into training and held-out pairs.

    ``preference_texts`` (one ``text`` column: prompts and both completions of the training pairs) is what a tiny
    model's tokenizer is trained on. ``source_fingerprints`` is an input only so the cache key follows the bytes.
    """
    train, test, counts = load_preference_data(data)
    record({**counts, "train_pairs": len(train), "test_pairs": len(test), "fingerprints": source_fingerprints})
    texts = pd.DataFrame({"text": [t for c in ("prompt", "chosen", "rejected") for t in train[c].tolist()]})
    return train, test, texts
