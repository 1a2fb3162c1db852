import tempfile
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.generation import rlhf
from finetune.models.directory import ModelDirectory
from finetune.models.sources import count_parameters
from finetune.params import RewardModelParams
from steps.metadata import record


@step
def train_reward_model(
    base_model_dir: ModelDirectory,
    train_pairs: pd.DataFrame,
    test_pairs: pd.DataFrame,
    reward: RewardModelParams,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models of reward.model): unused
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="reward_model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[dict[str, float], "reward_model_metrics"],
    Annotated[list[dict], "reward_training_log"],
]:
    """TRL RewardTrainer on the train pairs (a one-logit head on the policy's base model, or on the encoder
    ``reward.model`` names); held-out pairwise accuracy (``test_pairwise_accuracy``: reward of chosen > rejected)
    and mean margin on the test pairs."""
    workdir = tempfile.mkdtemp(prefix="reward_")
    start, description = base_model_dir.path, base_model_dir.base_model
    if reward.model is not None:
        texts = [t for column in ("prompt", "chosen", "rejected") for t in train_pairs[column].tolist()]
        start, description = rlhf.reward_base_directory(reward.model, workdir, texts)
    result = rlhf.train_reward_model(start, train_pairs, test_pairs, reward, workdir)
    record({**result.metrics, "reward_base_model": description})
    parameters = count_parameters(rlhf.load_reward_model(result.model_dir)[0])
    model_dir = ModelDirectory(result.model_dir, "reward_model", description, parameters)
    return model_dir, result.metrics, result.log_history
