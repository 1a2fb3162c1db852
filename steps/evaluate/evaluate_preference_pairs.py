from typing import Annotated

import pandas as pd
from zenml import step

from finetune.device import resolve_device
from finetune.generation.preference import evaluate_preferences
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams
from steps.metadata import record


@step
def evaluate_preference_pairs(
    model_dir: ModelDirectory,
    reference_dir: ModelDirectory,
    test_pairs: pd.DataFrame,
    evaluation: GenerationEvalParams,
    beta: float,
) -> Annotated[dict[str, float], "preference_metrics"]:
    """Held-out pairs scored by the policy and the reference: implicit reward β·(log π − log π_ref) per completion.

    Metrics: ``test_preference_accuracy`` (chosen reward > rejected), ``test_reward_margin``,
    ``test_reward_chosen``, ``test_reward_rejected``, ``test_pairs``.
    """
    metrics, _ = evaluate_preferences(model_dir.path, reference_dir.path, test_pairs, beta, evaluation.batch_size,
                                      resolve_device(evaluation.device))
    record(metrics)
    return metrics
