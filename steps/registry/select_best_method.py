from typing import Annotated

import pandas as pd
from zenml import step

from finetune.promotion import best_method
from steps.metadata import record


@step
def select_best_method(
    method_results: pd.DataFrame, primary_metric: str, method_per_item: dict[str, dict[str, float]] | None = None
) -> tuple[
    Annotated[dict[str, float], "metrics"],
    Annotated[str, "best_method"],
    Annotated[dict[str, float], "best_per_item_rougeL"],
]:
    """The compared method with the best ``primary_metric`` (in its direction): its metrics under their own names
    (what the promotion gate reads) plus every row's as ``<method>_<metric>`` (the untuned base model's row is
    recorded, never chosen), and the winner's per-prompt ROUGE-L from ``method_per_item`` (empty without it)."""
    rows = [{k: v for k, v in row.items() if not pd.isna(v)} for row in method_results.to_dict("records")]
    name, metrics = best_method(rows, primary_metric)
    record({"best_method": name})
    return metrics, name, dict((method_per_item or {}).get(name, {}))
