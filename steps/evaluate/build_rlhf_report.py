from typing import Annotated

from zenml import step
from zenml.types import HTMLString

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
) -> Annotated[HTMLString, "report"]:
    """HTML report: reward-model accuracy and loss, the policy's mean reward before/after RL, reward during RL."""
    html = rlhf_report(reward_model_metrics, base_reward, reward, reward_training_log, training_log)
    return HTMLString(with_promotion(html, promotion_decision))
