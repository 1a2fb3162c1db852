import tempfile
from typing import Annotated

import pandas as pd
from zenml import step

from finetune.data.tokenized import TokenizedDataset
from finetune.generation.tokenization import tokenize_instructions as tokenize
from finetune.models.directory import ModelDirectory
from finetune.params import InstructionTokenization
from steps.metadata import record


@step
def tokenize_instructions(
    base_model_dir: ModelDirectory,
    train_examples: pd.DataFrame,
    validation_examples: pd.DataFrame,
    tokenization: InstructionTokenization,
) -> tuple[
    Annotated[TokenizedDataset, "tokenized_train"],
    Annotated[TokenizedDataset, "tokenized_validation"],
]:
    """Render the examples with the template and tokenize them with the base model's tokenizer, as SFTTrainer would.

    The cache key is the data, the tokenizer's model directory and ``tokenization`` (template, max_length,
    completion-only masking), none of the optimisation settings: a run that changes only the learning rate reuses
    these Arrow files, which the training step reads memory-mapped.
    """
    splits = tokenize(base_model_dir.path, {"train": train_examples, "validation": validation_examples},
                      tokenization, tempfile.mkdtemp(prefix="tokenized_sft_"), base_model_dir.base_model)
    record({name: {k: t.stats[k] for k in ("examples", "rows", "tokens", "truncation_rate")}
            for name, t in splits.items()})
    return splits["train"], splits["validation"]
