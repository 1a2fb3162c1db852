from typing import Annotated

from zenml import step
from zenml.types import HTMLString

from finetune.params import RankingEvalParams
from finetune.ranking.metrics import RunComparison
from finetune.reports.ranking import ranking_report


@step
def build_ranking_report(
    comparison: dict,
    training_log: list[dict],
    rerank_stats: dict[str, float],
    promotion_decision: dict,
    source_fingerprints: dict[str, str],
    evaluation: RankingEvalParams,
    title: str = "Cross-encoder reranking",
) -> Annotated[HTMLString, "report"]:
    """HTML report: metric table with p-values, metric chart, loss curve, per-query gains, promotion decision."""
    result = RunComparison(**comparison)
    baseline, candidate = result.baseline, [n for n in result.means if n != result.baseline][0]
    extra = {
        "promotion": f"promoted to {promotion_decision['stage']}" if promotion_decision["promote"] else "not promoted",
        "promotion reason": promotion_decision["reason"],
        "rerank throughput (docs/s)": f"{rerank_stats['docs_per_second']:.1f}",
        **{f"fingerprint {k}": v for k, v in source_fingerprints.items()},
    }
    html = ranking_report(title, result, evaluation.primary_metric, baseline, candidate, training_log, extra)
    return HTMLString(html)
