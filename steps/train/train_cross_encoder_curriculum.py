import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step

from finetune.curriculum import STANDARD, QueryCurriculum
from finetune.models.directory import ModelDirectory
from finetune.params import CrossEncoderParams, CurriculumArm, CurriculumSchedule
from finetune.ranking.cross_encoder import train_cross_encoder
from steps.metadata import record


@step
def train_cross_encoder_curriculum(
    train_pairs: pd.DataFrame,
    cross_encoder: CrossEncoderParams,
    arm: CurriculumArm | None = None,
    difficulty_scores: dict[str, float] | None = None,
    schedule: CurriculumSchedule | None = None,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> tuple[
    Annotated[ModelDirectory, "trained_model_dir"],
    Annotated[list[dict], "training_log"],
    Annotated[list[float], "data_fraction"],
]:
    """Fine-tune the cross-encoder with one curriculum (``arm``), or with standard training when ``arm`` is None.

    Every arm runs through the same curriculum trainer with the same seed and number of steps, paced by
    ``schedule`` (``CurriculumParams.schedule``; its defaults when None). Standard training draws each batch
    uniformly at random from all rows (a ``RandomSampler``, as the plain trainer does with
    ``length_grouped_batches: false``): ``length_grouped_batches`` is ignored here, so every arm batches the same
    way. ``data_fraction`` is the share of the rows available at each step.
    """
    if arm is None:
        curriculum = QueryCurriculum({}, STANDARD)
    else:
        schedule = schedule or CurriculumSchedule()
        curriculum = QueryCurriculum(difficulty_scores or {}, arm.pacing, arm.invert, schedule.c0,
                                     schedule.full_data_fraction, schedule.seed)
    result = train_cross_encoder(train_pairs, cross_encoder, Path(tempfile.mkdtemp(prefix="curriculum_")), curriculum)
    record({
        "curriculum": STANDARD if arm is None else arm.name,
        "train_seconds": round(result.train_seconds, 2),
        "train_examples": result.train_examples,
        "optimizer_steps": len(result.data_fraction),
        "base_model": result.base_model,
        "device": result.device,
        "final_loss": result.log_history[-1]["loss"] if result.log_history else float("nan"),
    })
    model_dir = ModelDirectory(result.model_dir, "cross_encoder", result.base_model, result.num_parameters)
    return model_dir, result.log_history, result.data_fraction
