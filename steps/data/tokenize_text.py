import tempfile
from typing import Annotated

import pandas as pd
from zenml import step

from finetune.data.tokenized import TokenizedDataset
from finetune.generation.tokenization import tokenize_documents
from finetune.models.directory import ModelDirectory
from finetune.params import TextTokenization
from steps.metadata import record


@step
def tokenize_text(
    base_model_dir: ModelDirectory,
    train_documents: pd.DataFrame,
    validation_documents: pd.DataFrame,
    tokenization: TextTokenization,
) -> tuple[
    Annotated[TokenizedDataset, "tokenized_train"],
    Annotated[TokenizedDataset, "tokenized_validation"],
]:
    """Tokenize the documents with the model's tokenizer, join them with EOS and cut ``block_size`` blocks (capped
    at the model's positions).

    The cache key is the data, the tokenizer's model directory and the block size, none of the optimisation
    settings: a run that changes only the learning rate reuses these Arrow files.
    """
    splits = tokenize_documents(base_model_dir.path, {"train": train_documents, "validation": validation_documents},
                                tokenization, tempfile.mkdtemp(prefix="tokenized_text_"), base_model_dir.base_model)
    record({name: {k: t.stats[k] for k in ("examples", "rows", "tokens", "truncation_rate")}
            for name, t in splits.items()})
    return splits["train"], splits["validation"]
