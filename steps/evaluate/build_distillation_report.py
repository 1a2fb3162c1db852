from typing import Annotated

from zenml import step
from zenml.types import HTMLString

from finetune.reports.common import with_promotion
from finetune.reports.distillation import distillation_report


@step
def build_distillation_report(
    model_comparison: list[dict],
    training_stats: dict,
    baseline_stats: dict,
    training_log: list[dict],
    baseline_log: list[dict],
    promotion_decision: dict | None = None,
) -> Annotated[HTMLString, "report"]:
    """HTML report: teacher vs distilled student vs the student without a teacher, and both loss curves."""
    html = distillation_report(model_comparison, training_stats, baseline_stats, training_log, baseline_log)
    return HTMLString(with_promotion(html, promotion_decision))
