import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.models.directory import ModelDirectory
from finetune.params import DualEncoderDistillationParams
from finetune.ranking.dual_encoder import train_dual_encoder
from steps.metadata import record


@step
def distill_dual_encoder(
    teacher_scores: pd.DataFrame,
    teacher_model_dir: ModelDirectory,
    distillation: DualEncoderDistillationParams,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
]:
    """Train a smaller bi-encoder on the teacher's scores (MarginMSE on similarity margins, or KL) or on a
    dual-encoder teacher's embeddings (``embedding_mse``)."""
    embedding = distillation.student.loss == "embedding_mse"
    if embedding and teacher_model_dir.kind != "dual_encoder":
        raise ValueError(f"distillation.student.loss: embedding_mse learns a dual-encoder teacher's embeddings; "
                         f"this teacher is a {teacher_model_dir.kind} (use margin_mse or kl)")
    workdir = Path(tempfile.mkdtemp(prefix="dual_student_"))
    base = teacher_model_dir.path if distillation.from_teacher else None
    result = train_dual_encoder(teacher_scores, distillation.student, workdir, base_path=base,
                                base_description=f"teacher ({teacher_model_dir.base_model})",
                                default_every_other=distillation.from_teacher,
                                teacher_dir=teacher_model_dir.path if embedding else None)
    record({
        "num_parameters": result.num_parameters,
        "teacher_num_parameters": teacher_model_dir.num_parameters,
        "kept_layers": list(result.kept_layers) if result.kept_layers else None,
        "train_seconds": round(result.train_seconds, 2),
        "train_examples": result.train_examples,
        "base_model": result.base_model,
        "final_loss": result.log_history[-1]["loss"] if result.log_history else float("nan"),
    })
    model_dir = ModelDirectory(result.model_dir, "dual_encoder", result.base_model, result.num_parameters)
    return model_dir, result.log_history
