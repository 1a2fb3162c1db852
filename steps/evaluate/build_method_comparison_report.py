from typing import Annotated

import pandas as pd
from zenml import step
from zenml.types import HTMLString

from finetune.reports.common import with_promotion
from finetune.reports.training import method_comparison_report
from steps.metadata import record


@step
def build_method_comparison_report(
    method_results: pd.DataFrame, details: dict[str, str] | None = None, promotion_decision: dict | None = None
) -> Annotated[HTMLString, "report"]:
    """HTML report: one table and one chart per measurement across the compared methods."""
    rows = [{k: v for k, v in row.items() if not pd.isna(v)} for row in method_results.to_dict("records")]
    record({"methods": {str(r["method"]): {k: v for k, v in r.items() if k != "method"} for r in rows}})
    return HTMLString(with_promotion(method_comparison_report(rows, details), promotion_decision))
