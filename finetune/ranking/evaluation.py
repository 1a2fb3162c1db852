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


STARTING_POINT = "zero_shot"
"""Run name of the model a pipeline starts from, used as it is (the "did fine-tuning help?" baseline)."""


def vs_key(metric: str, run: str) -> str:
    """``test_ndcg@10_vs_zero_shot``: the candidate's primary metric compared with another run than the baseline."""
    return f"{metric_key(metric)}_vs_{run}"


def versus_metrics(comparison: RunComparison, candidate: str, other: str, stat_test: str,
                   alpha: float) -> dict[str, float]:
    """The other run's means (``<other>_test_<metric>``) and the candidate's paired test against it
    (``p_value_test_<metric>_vs_<other>``, ``significant_test_<metric>_vs_<other>``), per metric."""
    from finetune.ranking.metrics import paired_p_value

    out: dict[str, float] = {}
    for metric in comparison.metrics:
        mine = comparison.per_query[candidate][metric]
        theirs = comparison.per_query[other][metric]
        p = paired_p_value([mine[q] for q in mine], [theirs[q] for q in mine], stat_test)
        better = comparison.means[candidate][metric] > comparison.means[other][metric]
        out[metric_key(metric, other)] = float(comparison.means[other][metric])
        out[f"p_value_{vs_key(metric, other)}"] = float(p)
        out[f"significant_{vs_key(metric, other)}"] = float(p < alpha and better)
    return out
