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
    base_model_dir: ModelDirectory, train_pairs: pd.DataFrame, test_pairs: pd.DataFrame, reward: RewardModelParams
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="reward_model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[dict[str, float], "reward_model_metrics"],
    Annotated[list[dict], "reward_training_log"],
]:
    """TRL RewardTrainer on the train pairs (a one-logit head on the base model); held-out pairwise accuracy
    (``test_pairwise_accuracy``: reward of chosen > rejected) and mean margin on the test pairs."""
    workdir = tempfile.mkdtemp(prefix="reward_")
    result = rlhf.train_reward_model(base_model_dir.path, train_pairs, test_pairs, reward, workdir)
    record(result.metrics)
    parameters = count_parameters(rlhf.load_reward_model(result.model_dir)[0])
    model_dir = ModelDirectory(result.model_dir, "reward_model", base_model_dir.base_model, parameters)
    return model_dir, result.metrics, result.log_history
