from typing import Annotated

from zenml import step
from zenml.types import HTMLString

from finetune.params import RankingEvalParams
from finetune.ranking.metrics import RunComparison
from finetune.reports.ranking import curriculum_report


@step
def build_curriculum_report(
    comparison: dict,
    training_logs: list[list[dict]],
    data_fractions: list[list[float]],
    arm_names: list[str],
    best_arm: str,
    promotion_decision: dict,
    evaluation: RankingEvalParams,
) -> Annotated[HTMLString, "report"]:
    """HTML report: pacing curves, metric table and chart against standard training, loss curves, promotion.

    ``training_logs`` and ``data_fractions`` hold one entry per name of ``arm_names``, in the same order.
    """
    if len(set(arm_names)) != len(arm_names) or not len(arm_names) == len(training_logs) == len(data_fractions):
        raise ValueError(f"arm_names: {len(arm_names)} arms {list(arm_names)} for {len(training_logs)} training logs "
                         f"and {len(data_fractions)} data-fraction curves; give each arm once, with one of each")
    extra = {
        "best arm": best_arm,
        "promotion": f"promoted to {promotion_decision['stage']}" if promotion_decision["promote"] else "not promoted",
        "promotion reason": promotion_decision["reason"],
    }
    html = curriculum_report(
        "Curriculum learning vs standard training",
        RunComparison(**comparison),
        evaluation.primary_metric,
        dict(zip(arm_names, data_fractions, strict=True)),
        dict(zip(arm_names, training_logs, strict=True)),
        extra,
    )
    return HTMLString(html)
