from typing import Annotated

from zenml import step
from zenml.types import HTMLString

from finetune.reports.common import with_promotion
from finetune.reports.preference import dpo_report


@step
def build_dpo_report(
    preference_metrics: dict[str, float],
    training_stats: dict,
    training_log: list[dict],
    promotion_decision: dict | None = None,
) -> Annotated[HTMLString, "report"]:
    """HTML report: held-out preference accuracy and margins, preference agreement over training, DPO loss."""
    return HTMLString(with_promotion(dpo_report(preference_metrics, training_stats, training_log), promotion_decision))
