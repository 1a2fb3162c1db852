from typing import Annotated

import pandas as pd
from zenml import step
from zenml.types import HTMLString

from finetune.reports.common import with_promotion
from finetune.reports.training import method_comparison_report, versus_best
from steps.metadata import record


@step
def build_method_comparison_report(
    method_results: pd.DataFrame,
    details: dict[str, str] | None = None,
    promotion_decision: dict | None = None,
    method_per_item: dict[str, dict[str, float]] | None = None,
    best_method: str | None = None,
) -> Annotated[HTMLString, "report"]:
    """HTML report: one table and one chart per measurement across the compared methods (and the untuned base
    model, where measured), and each method's paired comparisons with the untuned model and, given
    ``method_per_item`` and ``best_method``, with the best method."""
    rows = [{k: v for k, v in row.items() if not pd.isna(v)} for row in method_results.to_dict("records")]
    if method_per_item and best_method:
        rows = versus_best(rows, method_per_item, best_method)
    record({"methods": {str(r["method"]): {k: v for k, v in r.items() if k != "method"} for r in rows}})
    return HTMLString(with_promotion(method_comparison_report(rows, details), promotion_decision))
