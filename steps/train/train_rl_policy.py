import tempfile
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.device import resolve_device
from finetune.generation.rlhf import RewardScorer, load_reward_model, reward_log, train_policy
from finetune.models.directory import ModelDirectory
from finetune.params import RlhfParams
from steps.metadata import record


@step
def train_rl_policy(
    base_model_dir: ModelDirectory, reward_model_dir: ModelDirectory, train_pairs: pd.DataFrame, rlhf: RlhfParams
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
]:
    """RLOO or GRPO (TRL) on the train prompts, rewarded by the reward model; ``training_log`` is the trainer's
    log (loss, mean reward per logged step)."""
    device = resolve_device(rlhf.rl.training.device)
    scorer = RewardScorer(*load_reward_model(reward_model_dir.path, device),
                          max_length=rlhf.reward.training.max_length)
    prompts = train_pairs["prompt"].drop_duplicates().tolist()
    result = train_policy(base_model_dir.path, scorer, prompts, rlhf.rl, tempfile.mkdtemp(prefix="rl_"))
    record({"algorithm": rlhf.rl.algorithm, "train_rewards": reward_log(result.log_history)})
    model_dir = ModelDirectory(result.model_dir, "causal_lm", base_model_dir.base_model,
                               base_model_dir.num_parameters)
    return model_dir, result.log_history
