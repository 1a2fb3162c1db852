from typing import Annotated

import pandas as pd
from zenml import step

from finetune.data.instructions import load_instruction_data
from finetune.params import InstructionDataParams
from steps.metadata import record


@step
def load_instructions(
    data: InstructionDataParams, source_fingerprints: dict[str, str]
) -> tuple[
    Annotated[pd.DataFrame, "train_examples"],
    Annotated[pd.DataFrame, "validation_examples"],
    Annotated[pd.DataFrame, "test_examples"],
]:
    """Parse prompt/response records (any supported layout) and split them by a seeded shuffle.

    ``source_fingerprints`` is an input only so the cache key follows the bytes on disk.
    """
    train, validation, test = load_instruction_data(data)
    record({"examples": {"train": len(train), "validation": len(validation), "test": len(test)},
            "fingerprints": source_fingerprints})
    return train, validation, test
