from typing import Annotated

import pandas as pd
from zenml import step

from finetune.data.text import load_text_data
from finetune.params import TextDataParams
from steps.metadata import record


@step
def load_text_corpus(
    data: TextDataParams, source_fingerprints: dict[str, str]
) -> tuple[
    Annotated[pd.DataFrame, "train_documents"],
    Annotated[pd.DataFrame, "validation_documents"],
    Annotated[pd.DataFrame, "test_documents"],
]:
    """Split the corpus into documents and those into seeded train/validation/test sets (never inside a document).

    ``source_fingerprints`` is an input only so the cache key follows the bytes on disk.
    """
    train, validation, test = load_text_data(data)
    record({
        "documents": {"train": len(train), "validation": len(validation), "test": len(test)},
        "characters": {"train": int(train["text"].str.len().sum()), "test": int(test["text"].str.len().sum())},
        "fingerprints": source_fingerprints,
    })
    return train, validation, test
