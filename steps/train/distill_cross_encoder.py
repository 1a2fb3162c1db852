import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.models.directory import ModelDirectory
from finetune.params import CrossEncoderDistillationParams
from finetune.ranking.distillation import train_cross_encoder_student
from steps.metadata import record


@step
def distill_cross_encoder(
    teacher_scores: pd.DataFrame,
    teacher_model_dir: ModelDirectory,
    distillation: CrossEncoderDistillationParams,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
]:
    """Train a smaller cross-encoder on the teacher's scores (MarginMSE, MSE or KL; CrossEncoderTrainer)."""
    result = train_cross_encoder_student(teacher_scores, distillation, Path(tempfile.mkdtemp(prefix="student_")),
                                         teacher_model_dir.path, teacher_model_dir.base_model)
    record({
        "num_parameters": result.num_parameters,
        "teacher_num_parameters": teacher_model_dir.num_parameters,
        "train_seconds": round(result.train_seconds, 2),
        "train_examples": result.train_examples,
        "base_model": result.base_model,
        "loss": distillation.loss,
        "final_loss": result.log_history[-1]["loss"] if result.log_history else float("nan"),
    })
    model_dir = ModelDirectory(result.model_dir, "cross_encoder", result.base_model, result.num_parameters)
    return model_dir, result.log_history
