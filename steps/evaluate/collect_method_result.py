import logging
from typing import Annotated

import pandas as pd
from zenml import step

from finetune.promotion import paired_difference
from finetune.reports.training import method_row

logger = logging.getLogger(__name__)


@step
def collect_method_result(
    method: str,
    training_stats: dict,
    perplexity_metrics: dict[str, float],
    generation_metrics: dict[str, float],
    mc_metrics: dict[str, float] | None = None,
    previous_results: pd.DataFrame | None = None,
    per_item_rougeL: dict[str, float] | None = None,
    per_item_perplexity: dict[str, float] | None = None,
    baseline_per_item_rougeL: dict[str, float] | None = None,
    baseline_per_item_perplexity: dict[str, float] | None = None,
    previous_per_item: dict[str, dict[str, float]] | None = None,
) -> tuple[Annotated[pd.DataFrame, "method_results"], Annotated[dict[str, dict[str, float]], "method_per_item_rougeL"]]:
    """Append one method's measurements and metrics to the comparison table of the methods before it.

    With the untuned base model's per-item values (``baseline_per_item_*``) the row also gets its paired
    comparison with it: ``rougeL_vs_untuned`` (per test prompt) and ``nll_vs_untuned`` (per scored window, the log
    of its perplexity), each with ``_ci_low`` / ``_ci_high`` (95 %), ``_p`` (paired t-test) and ``_n``.
    ``method_per_item_rougeL`` accumulates every method's per-prompt ROUGE-L (method -> prompt -> value), for the
    gate's paired test of the winner and the report's comparison with the best method.
    """
    row = method_row(method, training_stats, perplexity_metrics, generation_metrics, mc_metrics)
    if per_item_rougeL and baseline_per_item_rougeL:
        row.update(paired_difference(per_item_rougeL, baseline_per_item_rougeL, "rougeL_vs_untuned"))
    if per_item_perplexity and baseline_per_item_perplexity:
        nll = paired_difference(per_item_perplexity, baseline_per_item_perplexity, "nll_vs_untuned", log=True)
        if not nll:
            logger.warning("%s: no paired NLL test against the untuned model: fewer than 2 perplexity windows (the "
                           "test text fits one window of the model's context; set evaluation.perplexity_block_size "
                           "below its length to score several)", method)
        row.update(nll)
    table = pd.DataFrame([row]) if previous_results is None else pd.concat(
        [previous_results, pd.DataFrame([row])], ignore_index=True)
    per_item = dict(previous_per_item or {})
    if per_item_rougeL:
        per_item[method] = dict(per_item_rougeL)
    return table, per_item
