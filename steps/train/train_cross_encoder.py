import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

import finetune.ranking.cross_encoder
from finetune.models.directory import ModelDirectory
from finetune.params import CrossEncoderParams
from steps.metadata import record


@step
def train_cross_encoder(
    train_pairs: pd.DataFrame,
    cross_encoder: CrossEncoderParams,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
]:
    """Fine-tune the cross-encoder (sentence-transformers CrossEncoderTrainer) on the mined pairs."""
    workdir = Path(tempfile.mkdtemp(prefix="cross_encoder_"))
    result = finetune.ranking.cross_encoder.train_cross_encoder(train_pairs, cross_encoder, workdir)
    record({
        "num_parameters": result.num_parameters,
        "train_seconds": round(result.train_seconds, 2),
        "train_examples": result.train_examples,
        "base_model": result.base_model,
        "device": result.device,
        "final_loss": result.log_history[-1]["loss"] if result.log_history else float("nan"),
    })
    model_dir = ModelDirectory(result.model_dir, "cross_encoder", result.base_model, result.num_parameters)
    return model_dir, result.log_history
