import tempfile
from typing import Annotated

import pandas as pd
from zenml import step

from finetune.models.directory import ModelDirectory
from finetune.params import TeacherParams
from finetune.ranking.distillation import add_ensemble_scores, with_unlabeled
from finetune.ranking.distillation import score_teacher as score
from steps.metadata import record


@step
def score_teacher(
    train_pairs: pd.DataFrame,
    teacher_model_dir: ModelDirectory,
    teacher: TeacherParams,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
    unlabeled_candidates: pd.DataFrame | None = None,
    ensemble_fingerprints: dict[str, str] | None = None,  # cache key only: the members' model fingerprints
) -> Annotated[pd.DataFrame, "teacher_scores"]:
    """The teacher's score of every mined (query, passage) row and of every unlabeled query's candidates (role
    ``candidate``, after the mined groups), computed once and cached as ``teacher_scores``. With
    ``teacher.ensemble`` each member scores the same rows and ``teacher_score`` is their per-query fusion (the
    teacher's own score kept as ``teacher_model_score``); ``ensemble_fingerprints`` keys the cache on their models."""
    rows = with_unlabeled(train_pairs, unlabeled_candidates)
    scored, seconds = score(rows, teacher_model_dir.path, teacher_model_dir.kind, teacher.batch_size,
                            teacher.device, teacher.max_length)
    scored, members = add_ensemble_scores(scored, teacher, tempfile.mkdtemp(prefix="teacher_ensemble_"))
    record({
        "rows": len(scored),
        "unlabeled_rows": int((scored["role"] == "candidate").sum()),
        "teacher_architecture": teacher_model_dir.kind,
        "scoring_seconds": round(seconds, 2),
        "positive_score_mean": float(scored.loc[scored["role"] == "positive", "teacher_score"].mean()),
        "negative_score_mean": float(scored.loc[scored["role"] == "negative", "teacher_score"].mean()),
    } | ({"teacher_weight": teacher.teacher_weight, "ensemble": members} if members else {}))
    return scored
