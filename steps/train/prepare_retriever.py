import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.models.directory import ModelDirectory
from finetune.params import RagRetrieverParams, RegisteredModel
from finetune.ranking.distillation import save_encoder
from steps.metadata import record


@step
def prepare_retriever(
    retriever: RagRetrieverParams,
    corpus: pd.DataFrame,
    train_queries: pd.DataFrame,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> Annotated[ModelDirectory, ArtifactConfig(name="retriever_model_dir", artifact_type=ArtifactType.MODEL)]:
    """A dual-encoder retriever given as a model spec, saved as a sentence-transformers directory (a ``tiny_bert``
    spec trains its tokenizer on the queries and passages). A registered version needs no step: the pipeline
    passes its ``model_dir`` artifact."""
    if retriever.model is None or isinstance(retriever.model, RegisteredModel):
        raise ValueError("retriever.model: this step materialises a model spec, not a registered version")
    texts = train_queries["query"].tolist() + corpus["passage"].tolist()
    target = Path(tempfile.mkdtemp(prefix="retriever_")) / "model"
    path, description, parameters = save_encoder(retriever.model, "dual_encoder", target, texts)
    record({"retriever": description, "num_parameters": parameters})
    return ModelDirectory(path, "dual_encoder", description, parameters)
