import tempfile
from pathlib import Path
from typing import Annotated

from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.data.tokenized import TokenizedDataset
from finetune.generation.distillation import distill_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.models.layer_dropping import num_layers
from finetune.params import LmDistillationParams, LocalModel
from steps.metadata import record


@step
def distill_causal_lm_model(
    teacher_dir: ModelDirectory,
    student_base_dir: ModelDirectory,
    tokenized_train: TokenizedDataset,
    tokenized_validation: TokenizedDataset,
    distillation: LmDistillationParams,
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
    Annotated[dict, "training_stats"],
]:
    """Train the student on the text blocks from ``tokenize_text`` with ``α·τ²·KL(teacher ‖ student) + (1−α)·CE``
    (α = 0: no teacher).

    ``student_base_dir`` is the teacher's own directory when the student starts from the teacher; the layers it
    keeps are resolved here (every other one by default). Fails before training when the vocabularies differ.
    """
    keep = distillation.layers_to_keep(num_layers(student_base_dir.path))
    params = distillation.model_copy(update={"student": LocalModel(path=Path(student_base_dir.path)),
                                             "keep_layers": keep})
    result = distill_causal_lm(tokenized_train, tokenized_validation, teacher_dir.path, params,
                               tempfile.mkdtemp(prefix="lm_kd_"))
    stats = {"method": distillation.method.name, **result.stats}
    record({**stats, "teacher": teacher_dir.base_model, "student": student_base_dir.base_model})
    model_dir = ModelDirectory(result.model_dir, "causal_lm", student_base_dir.base_model, stats["total_parameters"])
    return model_dir, result.log_history, stats
