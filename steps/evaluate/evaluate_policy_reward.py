from typing import Annotated

import pandas as pd
from zenml import step

from finetune.device import resolve_device
from finetune.generation.rlhf import RewardScorer, load_reward_model, mean_reward
from finetune.models.directory import ModelDirectory
from finetune.params import RewardEvalParams
from steps.metadata import record


@step
def evaluate_policy_reward(
    model_dir: ModelDirectory,
    reward_model_dir: ModelDirectory,
    test_pairs: pd.DataFrame,
    evaluation: RewardEvalParams,
    split: str = "test",
) -> Annotated[dict[str, float], "reward_metrics"]:
    """``<split>_mean_reward``: the reward model's mean score of the policy's completions to the held-out prompts."""
    device = resolve_device(evaluation.device)
    scorer = RewardScorer(*load_reward_model(reward_model_dir.path, device), batch_size=evaluation.batch_size)
    prompts = test_pairs["prompt"].drop_duplicates().tolist()
    metrics = {f"{split}_mean_reward": mean_reward(model_dir.path, scorer, prompts, evaluation)}
    record(metrics)
    return metrics
