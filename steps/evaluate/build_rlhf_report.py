from typing import Annotated

from zenml import step
from zenml.types import HTMLString

from finetune.models.directory import ModelDirectory
from finetune.reports.common import with_promotion
from finetune.reports.rlhf_rag import rlhf_report


@step
def build_rlhf_report(
    reward_model_metrics: dict[str, float],
    base_reward: dict[str, float],
    reward: dict[str, float],
    reward_training_log: list[dict],
    training_log: list[dict],
    promotion_decision: dict | None = None,
    reward_model_dir: ModelDirectory | None = None,
) -> Annotated[HTMLString, "report"]:
    """HTML report: the reward model's starting point, accuracy and loss, the policy's mean reward before/after RL
    (judged by that reward model), reward during RL."""
    described = None if reward_model_dir is None else {
        "reward model started from": reward_model_dir.base_model, "parameters": reward_model_dir.num_parameters}
    html = rlhf_report(reward_model_metrics, base_reward, reward, reward_training_log, training_log, described)
    return HTMLString(with_promotion(html, promotion_decision))
