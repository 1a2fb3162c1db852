import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.generation.training import train_sft
from finetune.models.directory import ModelDirectory
from finetune.params import LocalGenerator, LocalModel
from steps.metadata import record


@step
def train_intent_generator(
    base_model_dir: ModelDirectory, train_examples: pd.DataFrame, generator: LocalGenerator
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
]:
    """SFT (TRL SFTTrainer, the configured method) on (query + retrieved passages) → intent examples."""
    params = generator.sft.model_copy(update={"model": LocalModel(path=Path(base_model_dir.path))})
    no_validation = train_examples.iloc[:0]
    result = train_sft(train_examples, no_validation, generator.template, params, tempfile.mkdtemp(prefix="rag_"))
    record({"method": params.method.name, **result.stats})
    model_dir = ModelDirectory(result.model_dir, "causal_lm", base_model_dir.base_model,
                               result.stats["total_parameters"])
    return model_dir, result.log_history
