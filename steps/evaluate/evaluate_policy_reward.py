from typing import Annotated

import pandas as pd
from zenml import step

from finetune.device import resolve_device
from finetune.generation.rlhf import RewardScorer, load_reward_model, prompt_rewards
from finetune.models.directory import ModelDirectory
from finetune.params import RewardEvalParams
from finetune.promotion import item_key
from steps.metadata import record


@step
def evaluate_policy_reward(
    model_dir: ModelDirectory,
    reward_model_dir: ModelDirectory,
    test_pairs: pd.DataFrame,
    evaluation: RewardEvalParams,
    split: str = "test",
) -> tuple[Annotated[dict[str, float], "reward_metrics"], Annotated[dict[str, float], "per_item_reward"]]:
    """``<split>_mean_reward``: the reward model's mean score of the policy's completions to the held-out prompts;
    ``per_item_reward`` each prompt's mean reward keyed by its text, for the promotion gate's paired test."""
    device = resolve_device(evaluation.device)
    scorer = RewardScorer(*load_reward_model(reward_model_dir.path, device), batch_size=evaluation.batch_size)
    prompts = test_pairs["prompt"].drop_duplicates().tolist()
    rewards = prompt_rewards(model_dir.path, scorer, prompts, evaluation)
    metrics = {f"{split}_mean_reward": sum(rewards) / len(rewards)}
    record(metrics)
    return metrics, {item_key(prompt): reward for prompt, reward in zip(prompts, rewards, strict=False)}
