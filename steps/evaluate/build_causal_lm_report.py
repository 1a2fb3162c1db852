from typing import Annotated

from zenml import step
from zenml.types import HTMLString

from finetune.reports.common import with_promotion
from finetune.reports.training import causal_lm_report


@step
def build_causal_lm_report(
    base_perplexity: dict[str, float],
    perplexity_metrics: dict[str, float],
    training_stats: dict,
    training_log: list[dict],
    promotion_decision: dict | None = None,
) -> Annotated[HTMLString, "report"]:
    """HTML report: held-out perplexity of the base and the trained model, training measurements, loss curve."""
    html = causal_lm_report(base_perplexity, perplexity_metrics, training_stats, training_log)
    return HTMLString(with_promotion(html, promotion_decision))
