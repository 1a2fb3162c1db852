from typing import Annotated

import pandas as pd
from zenml import step

from finetune.promotion import best_method
from steps.metadata import record


@step
def select_best_method(
    method_results: pd.DataFrame, primary_metric: str
) -> tuple[Annotated[dict[str, float], "metrics"], Annotated[str, "best_method"]]:
    """The compared method with the best ``primary_metric`` (in its direction): its metrics under their own names
    (what the promotion gate reads) plus every method's as ``<method>_<metric>``."""
    rows = [{k: v for k, v in row.items() if not pd.isna(v)} for row in method_results.to_dict("records")]
    name, metrics = best_method(rows, primary_metric)
    record({"best_method": name})
    return metrics, name
