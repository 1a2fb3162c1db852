from typing import Annotated

import pandas as pd
from zenml import step

from finetune.device import resolve_device
from finetune.generation.preference import evaluate_preferences
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams
from finetune.promotion import item_key
from steps.metadata import record


@step
def evaluate_preference_pairs(
    model_dir: ModelDirectory,
    reference_dir: ModelDirectory,
    test_pairs: pd.DataFrame,
    evaluation: GenerationEvalParams,
    beta: float,
) -> tuple[Annotated[dict[str, float], "preference_metrics"], Annotated[dict[str, float], "per_item_preference"]]:
    """Held-out pairs scored by the policy and the reference: implicit reward β·(log π − log π_ref) per completion.

    Metrics: ``test_preference_accuracy`` (chosen reward > rejected), ``test_reward_margin``,
    ``test_reward_chosen``, ``test_reward_rejected``, ``test_pairs``, and the policy against three baselines on the
    same pairs (``finetune.generation.preference.comparison_metrics``): ``test_<s>_accuracy`` with its 95% Wilson
    interval (``..._ci_low``, ``..._ci_high``) for ``s`` in ``preference`` (the policy), ``reference_logprob``,
    ``reference_logprob_per_token`` and ``longer_answer``, exact McNemar ``test_<s>_mcnemar_p`` of the policy
    against each baseline, the same on the length-balanced subset (``test_balanced_...``, ``test_balanced_pairs``)
    and accuracies where the chosen / rejected answer is longer (``test_chosen_longer_<s>_accuracy``, ...).
    ``per_item_preference``: 1.0 or 0.0 per pair (keyed by the pair's text), which the promotion gate pairs with
    production's.
    """
    result = evaluate_preferences(model_dir.path, reference_dir.path, test_pairs, beta, evaluation.batch_size,
                                  resolve_device(evaluation.device))
    record(result.metrics)
    keys = [item_key(*texts) for texts in test_pairs[["prompt", "chosen", "rejected"]].itertuples(index=False)]
    return result.metrics, {key: float(ok) for key, ok in zip(keys, result.correct["preference"], strict=True)}
