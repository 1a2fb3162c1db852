"""Flatten a run comparison into the metric names the pipelines log: ``<split>_<metric>``."""

from __future__ import annotations

from finetune.ranking.metrics import RunComparison

SPLIT = "test"


def metric_key(metric: str, run: str | None = None) -> str:
    """``test_ndcg@10`` for the candidate, ``bm25_test_ndcg@10`` for a named baseline run."""
    return f"{run}_{SPLIT}_{metric}" if run else f"{SPLIT}_{metric}"


def comparison_metrics(comparison: RunComparison, candidate: str, baseline: str) -> dict[str, float]:
    """Candidate metrics, baseline metrics, p-values and significance flags (1.0/0.0) in one flat dict."""
    out: dict[str, float] = {}
    for metric, value in comparison.means[candidate].items():
        out[metric_key(metric)] = float(value)
        out[metric_key(metric, baseline)] = float(comparison.means[baseline][metric])
        out[f"p_value_{metric_key(metric)}"] = float(comparison.p_values[candidate][metric])
        out[f"significant_{metric_key(metric)}"] = float(comparison.significant[candidate][metric])
    return out
