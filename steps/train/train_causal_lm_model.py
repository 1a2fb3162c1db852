import tempfile
from pathlib import Path
from typing import Annotated

from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.data.tokenized import TokenizedDataset
from finetune.generation.training import train_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import CausalLmParams, LocalModel
from steps.metadata import record


@step
def train_causal_lm_model(
    base_model_dir: ModelDirectory,
    tokenized_train: TokenizedDataset,
    tokenized_validation: TokenizedDataset,
    causal_lm: CausalLmParams,
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
    Annotated[dict, "training_stats"],
]:
    """Continued pre-training (transformers Trainer) on the ``block_size`` blocks from ``tokenize_text``."""
    params = causal_lm.model_copy(update={"model": LocalModel(path=Path(base_model_dir.path))})
    result = train_causal_lm(tokenized_train, tokenized_validation, params, tempfile.mkdtemp(prefix="clm_"))
    stats = {"method": causal_lm.method.name, **result.stats}
    record({**stats, "tokenization": result.tokenization, "base_model": base_model_dir.base_model})
    model_dir = ModelDirectory(result.model_dir, "causal_lm", base_model_dir.base_model, stats["total_parameters"])
    return model_dir, result.log_history, stats
