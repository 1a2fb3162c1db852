from typing import Annotated

from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.models.directory import ModelDirectory
from steps.metadata import record


@step
def select_best_model(
    trained_model_dirs: list[ModelDirectory], arm_names: list[str], best_arm: str
) -> Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)]:
    """The best arm's model as this run's ``model_dir`` (the model artifact the promotion gate stages)."""
    if best_arm not in arm_names:
        raise ValueError(f"best arm {best_arm!r} is not one of {arm_names}")
    record({"best_arm": best_arm})
    return trained_model_dirs[arm_names.index(best_arm)]
