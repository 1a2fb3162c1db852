import tempfile
from typing import Annotated

import pandas as pd
from zenml import step

from finetune.models.directory import ModelDirectory
from finetune.params import DifficultyParams
from finetune.ranking.curriculum import difficulty_summary
from finetune.ranking.curriculum import score_difficulty as score
from steps.metadata import record


@step
def score_difficulty(
    train_pairs: pd.DataFrame,
    difficulty: DifficultyParams,
    model_dir: ModelDirectory | None = None,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> Annotated[dict[str, float], "difficulty_scores"]:
    """Difficulty of every training query (higher = harder) by one of Penha & Hauff's functions.

    One invocation per function, cached on the pairs and that function's own settings only, so choosing other
    pacing functions or adding curricula reuses the scores. ``model_dir`` is the trained cross-encoder that
    ``model_prediction`` and ``model_loss`` need.
    """
    workdir = tempfile.mkdtemp(prefix="difficulty_")
    scores = score(train_pairs, difficulty, None if model_dir is None else str(model_dir.path), workdir)
    record({"difficulty": difficulty.name, **difficulty_summary(scores)})
    return scores
