from typing import Annotated

import pandas as pd
from zenml import step

from finetune.reports.training import method_row


@step
def collect_method_result(
    method: str,
    training_stats: dict,
    perplexity_metrics: dict[str, float],
    generation_metrics: dict[str, float],
    mc_metrics: dict[str, float] | None = None,
    previous_results: pd.DataFrame | None = None,
) -> Annotated[pd.DataFrame, "method_results"]:
    """Append one method's measurements and metrics to the comparison table of the methods before it."""
    row = pd.DataFrame([method_row(method, training_stats, perplexity_metrics, generation_metrics, mc_metrics)])
    return row if previous_results is None else pd.concat([previous_results, row], ignore_index=True)
