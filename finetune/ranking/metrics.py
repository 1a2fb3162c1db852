"""IR metrics as ranx computes them, averaged the TREC way, and paired significance tests between runs.

Metric names are ranx's: ``ndcg@10``, ``mrr@10``, ``map@100`` (or ``map``), ``recall@100``, ``precision@10``.
The values are ranx's, computed by :mod:`finetune.ranking.ir_metrics` in numpy: ranx's numba kernels took up to a
minute to compile on a fresh install (as long as the demo's training), this takes milliseconds; a test holds the two
equal on every metric family.

Conventions, chosen to match trec_eval on TREC DL / MS MARCO:

- The mean is over the queries **in the qrels**; a judged query the run has no candidates for scores 0
  (ranx would instead refuse the run unless asked to pad it). Queries only in the run are ignored.
- ``relevance_level`` is the lowest grade that counts as relevant for the binary metrics (MRR, MAP, recall,
  precision, ...): TREC DL 2019/2020 use 2. ranx reads it from a ``-l<level>`` suffix on the metric name
  (``mrr@10-l2``), which this module appends; a name that already has a suffix is left alone.
- nDCG (and DCG) always use every positive grade as a linear gain, rel / log2(rank + 1), as trec_eval's
  ``ndcg_cut`` does; ``ndcg_burges`` is the exponential 2^rel - 1 variant.
- Ties in a run's scores are ordered as ranx's unstable sort orders them (trec_eval breaks them by docid).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.stats

from finetune.data.types import Qrels, Run
from finetune.params import RANX_METRICS, metric_family
from finetune.ranking import ir_metrics

_GRADED_METRICS = frozenset({"dcg", "dcg_burges", "ndcg", "ndcg_burges"})
STAT_TESTS = ("student", "fisher")


def _ranx_name(metric: str, relevance_level: int) -> str:
    if metric_family(metric) not in RANX_METRICS:
        raise ValueError(f"unknown metric {metric!r}; use a ranx name such as 'ndcg@10', 'mrr@10', 'map@100'")
    if "-l" in metric or metric_family(metric) in _GRADED_METRICS:
        return metric
    return f"{metric}-l{relevance_level}"


def _per_query(
    qrels: Qrels, run: Run, metrics: list[str], relevance_level: int
) -> dict[str, dict[str, float]]:
    """metric -> qid -> value for every query in ``qrels`` (0 where the run has no candidates)."""
    if not qrels:
        raise ValueError("qrels has no queries to evaluate")
    if not metrics:
        raise ValueError("metrics is empty; name at least one, e.g. ['ndcg@10']")
    names = {metric: _ranx_name(metric, relevance_level) for metric in metrics}
    # A query the run lacks is an empty ranking, and every metric is 0 on an empty ranking or judgment list.
    values = ir_metrics.evaluate(qrels, run, list(names.values()))
    return {metric: dict(values[name]) for metric, name in names.items()}


def evaluate_run(qrels: Qrels, run: Run, metrics: list[str], relevance_level: int = 1) -> dict[str, float]:
    """Mean of each metric over the queries in ``qrels``.

    Args:
        qrels: Graded judgments; their queries are the ones averaged over.
        run: Candidate scores; a judged query missing from it (or with no candidates) scores 0.
        metrics: ranx metric names, e.g. ``["ndcg@10", "mrr@10", "recall@100"]``.
        relevance_level: Lowest grade counted relevant by the binary metrics (2 for TREC DL).

    Returns:
        metric -> mean value.

    Raises:
        ValueError: Empty qrels, or a metric ranx does not know.
    """
    per_query = _per_query(qrels, run, metrics, relevance_level)
    return {metric: float(np.mean(list(values.values()))) for metric, values in per_query.items()}


def per_query_scores(qrels: Qrels, run: Run, metric: str, relevance_level: int = 1) -> dict[str, float]:
    """qid -> value of one metric, for every query in ``qrels`` (see :func:`evaluate_run`)."""
    return _per_query(qrels, run, [metric], relevance_level)[metric]


def paired_p_value(
    candidate: np.ndarray,
    baseline: np.ndarray,
    stat_test: str = "student",
    n_permutations: int = 10_000,
    seed: int = 42,
) -> float:
    """Two-sided p-value that two systems' per-query scores (aligned by query) have the same mean.

    "student" is the paired t-test (scipy's ``ttest_rel``). "fisher" is the paired randomisation test of
    Smucker et al. (CIKM 2007): each permutation flips the sign of every per-query difference with probability
    1/2, and p = (1 + #{|mean of flipped| >= |observed mean|}) / (1 + n_permutations), so it is never 0
    (Phipson & Smyth 2010). Identical score vectors give 1.0 (the t statistic would be 0 / 0); a t-test on a
    single query gives nan, which no threshold accepts.

    Args:
        candidate: Per-query scores of the system under test.
        baseline: Per-query scores of the reference system, same query order.
        stat_test: "student" or "fisher".
        n_permutations: Sign-flip samples for "fisher".
        seed: Seed of the "fisher" sampler, so reports are reproducible.

    Returns:
        The p-value.
    """
    if stat_test not in STAT_TESTS:
        raise ValueError(f"stat_test must be one of {STAT_TESTS}, got {stat_test!r}")
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if not diff.any():
        return 1.0
    if stat_test == "student":
        with warnings.catch_warnings():
            # Near-constant differences trip scipy's precision-loss warning; t is then huge and p ~ 0 anyway.
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(scipy.stats.ttest_rel(candidate, baseline).pvalue)
    rng = np.random.default_rng(seed)
    observed = abs(diff.mean())
    # About 4M sign entries (32 MB of float64) per chunk: 6,980 MS MARCO dev queries -> 600 permutations each.
    chunk = max(1, 2**22 // diff.size)
    hits = 0
    for start in range(0, n_permutations, chunk):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(chunk, n_permutations - start), diff.size))
        # The tolerance keeps the identity flip a hit despite summation-order rounding.
        hits += int(np.count_nonzero(np.abs(signs @ diff) / diff.size >= observed - 1e-12))
    return (hits + 1) / (n_permutations + 1)


@dataclass(frozen=True)
class RunComparison:
    """Metric means, per-query values and significance of several runs against one baseline.

    Attributes:
        baseline: Name of the reference run.
        metrics: Metric names, in the order given.
        means: run -> metric -> mean over the judged queries.
        per_query: run -> metric -> qid -> value.
        p_values: run -> metric -> p-value against the baseline (the baseline itself has no entry).
        significant: run -> metric -> p < alpha and the run's mean is higher than the baseline's.
        alpha: Significance threshold.
        stat_test: "student" or "fisher".
    """

    baseline: str
    metrics: list[str]
    means: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, dict[str, float]]]
    p_values: dict[str, dict[str, float]]
    significant: dict[str, dict[str, bool]]
    alpha: float
    stat_test: str

    def to_rows(self) -> list[dict[str, str | float | None]]:
        """One row per run: ``run``, each metric's mean, then ``<metric> p`` (None on the baseline's row)."""
        rows: list[dict[str, str | float | None]] = []
        for name, means in self.means.items():
            row: dict[str, str | float | None] = {"run": name}
            row.update({metric: means[metric] for metric in self.metrics})
            row.update({f"{metric} p": self.p_values.get(name, {}).get(metric) for metric in self.metrics})
            rows.append(row)
        return rows

    def to_markdown(self, float_fmt: str = "{:.4f}") -> str:
        """A Markdown table of :meth:`to_rows`; † marks a significant improvement over the baseline."""
        header = ["run", *self.metrics, *(f"{metric} p" for metric in self.metrics)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, means in self.means.items():
            cells = [name.replace("|", "\\|")]
            for metric in self.metrics:
                mark = " †" if self.significant.get(name, {}).get(metric) else ""
                cells.append(float_fmt.format(means[metric]) + mark)
            for metric in self.metrics:
                p = self.p_values.get(name, {}).get(metric)
                cells.append("" if p is None else f"{p:.3g}")  # small p-values stay readable (2.7e-12)
            lines.append("| " + " | ".join(cells) + " |")
        n_queries = len(self.per_query[self.baseline][self.metrics[0]])
        baseline = self.baseline.replace("|", "\\|")
        lines.append(
            f"\n† better than {baseline} with p < {self.alpha} "
            f"(paired {self.stat_test} test over {n_queries} queries)"
        )
        return "\n".join(lines)


def compare_runs(
    qrels: Qrels,
    runs: dict[str, Run],
    metrics: list[str],
    baseline: str,
    stat_test: str = "student",
    alpha: float = 0.05,
    relevance_level: int = 1,
    n_permutations: int = 10_000,
    seed: int = 42,
) -> RunComparison:
    """Evaluate several runs and test each one against ``baseline``, query by query.

    Args:
        qrels: Graded judgments; every test pairs the runs' values on these queries.
        runs: run name -> run; must include ``baseline``.
        metrics: ranx metric names.
        baseline: Name of the reference run.
        stat_test: "student" (paired t-test) or "fisher" (paired randomisation test).
        alpha: A run is significantly better when p < alpha and its mean is higher.
        relevance_level: Lowest grade counted relevant by the binary metrics.
        n_permutations: Sign-flip samples for "fisher".
        seed: Seed of the "fisher" sampler.

    Returns:
        The :class:`RunComparison`.

    Raises:
        ValueError: Unknown baseline, stat_test or metric, or empty qrels.
    """
    if baseline not in runs:
        raise ValueError(f"baseline {baseline!r} is not one of the runs {sorted(runs)}")
    if stat_test not in STAT_TESTS:
        raise ValueError(f"stat_test must be one of {STAT_TESTS}, got {stat_test!r}")
    per_query = {name: _per_query(qrels, run, metrics, relevance_level) for name, run in runs.items()}
    means = {
        name: {metric: float(np.mean(list(values.values()))) for metric, values in scores.items()}
        for name, scores in per_query.items()
    }
    p_values: dict[str, dict[str, float]] = {}
    significant: dict[str, dict[str, bool]] = {}
    for name in runs:
        if name == baseline:
            continue
        p_values[name], significant[name] = {}, {}
        for metric in metrics:
            # Both dicts list the qrels' queries in the same order, so the arrays are paired by query.
            candidate = np.array(list(per_query[name][metric].values()))
            reference = np.array(list(per_query[baseline][metric].values()))
            p = paired_p_value(candidate, reference, stat_test, n_permutations, seed)
            p_values[name][metric] = p
            significant[name][metric] = bool(p < alpha and means[name][metric] > means[baseline][metric])
    return RunComparison(
        baseline=baseline,
        metrics=list(metrics),
        means=means,
        per_query=per_query,
        p_values=p_values,
        significant=significant,
        alpha=alpha,
        stat_test=stat_test,
    )
