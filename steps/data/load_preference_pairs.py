from typing import Annotated

import pandas as pd
from zenml import step

from finetune.generation.rlhf import load_preferences
from finetune.params import RlhfDataParams
from steps.metadata import record


@step
def load_preference_pairs(
    data: RlhfDataParams, source_fingerprints: dict[str, str]
) -> tuple[
    Annotated[pd.DataFrame, "train_pairs"],
    Annotated[pd.DataFrame, "test_pairs"],
    Annotated[pd.DataFrame, "train_texts"],
]:
    """Prompt/chosen/rejected pairs split by a seeded shuffle; ``train_texts`` (one ``text`` column: prompts and
    both answers of the train pairs) is what a tiny starting model's tokenizer is trained on.

    ``source_fingerprints`` is an input only so the cache key follows the bytes on disk.
    """
    train, test = load_preferences(data)
    texts = pd.DataFrame({"text": pd.concat([train["prompt"] + train["chosen"], train["rejected"]],
                                            ignore_index=True)})
    record({"pairs": {"train": len(train), "test": len(test)}, "fingerprints": source_fingerprints})
    return train, test, texts
