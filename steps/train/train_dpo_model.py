import tempfile
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.generation.preference import local, train_dpo
from finetune.models.directory import ModelDirectory
from finetune.params import DpoParams
from steps.metadata import record


@step
def train_dpo_model(
    base_model_dir: ModelDirectory,
    train_pairs: pd.DataFrame,
    test_pairs: pd.DataFrame,
    dpo: DpoParams,
    reference_dir: ModelDirectory | None = None,
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
    Annotated[dict, "training_stats"],
]:
    """DPO (TRL DPOTrainer) from the starting model; LoRA adapters are merged into the saved model.

    The reference is ``reference_dir`` when given, else the starting model (kept in memory, reached by disabling
    the adapter, or precomputed, as ``dpo.reference`` says).
    """
    params = dpo.model_copy(update={"model": local(base_model_dir.path)})
    result = train_dpo(train_pairs, test_pairs, params, tempfile.mkdtemp(prefix="dpo_"),
                       reference_dir=None if reference_dir is None else reference_dir.path)
    stats = {"method": dpo.method.name, **result.stats}
    record(stats)
    model_dir = ModelDirectory(result.model_dir, "causal_lm", base_model_dir.base_model, stats["total_parameters"])
    return model_dir, result.log_history, stats
