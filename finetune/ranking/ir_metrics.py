"""ranx's metrics in numpy, value for value: the same numbers without numba's compile on a cold cache.

ranx (0.3.21) builds numba typed dicts and compiles a kernel per metric the first time it runs on a machine:
up to a minute on a fresh install, as long as the demo's training. This module reads ranx's metric names
(``ndcg@10``, ``mrr@10-l2``, ``rbp.95``) and repeats its arithmetic step by step: the same rank order, cut-offs,
divisions and left-to-right sums. ``tests/finetune/ranking/test_ir_metrics.py`` checks every metric family
against ranx itself to 1e-12; all but rbp's values come out bit for bit equal (numba's pow rounds p^(r - 1) in
the last bit differently from numpy's: 1e-15).

What ranx does and this module repeats:

- Ranks: candidates sorted by descending score with numba's quicksort, which is not stable. Tied candidates
  only change a metric when their judgments differ; only then is numba's quicksort replayed (in Python) to put
  them in ranx's order, otherwise numpy's sort (equal up to such ties) is used. NaN scores rank last.
- Grades are cast to int (``np.array(grades, dtype=int)``); ``-l<level>`` (default 1) is the lowest grade that
  is relevant. Every metric is 0 for a query without a relevant judgment (bpref: see below) or candidates.
- ``@k`` cuts the ranking at k; ``@0`` or no cut-off means the whole list; precision@k divides by k even when
  fewer than k candidates were retrieved. nDCG's ideal ranking is cut at min(k, number of judgments).
- dcg and ndcg weight rank r by grade / log2(r + 1) (Järvelin), the ``_burges`` ones by (2^grade - 1) /
  log2(r + 1); rbp.<p> weights rank r by grade * p^(r - 1), times (1 - p); grades below the level weigh 0.
- bpref: judged candidates only, 1 - min(#non-relevant above, R) / min(R, N) per retrieved relevant one,
  summed / R. With no judged non-relevant document (N = 0) that is 0 / 0: NaN, as in ranx.

One deliberate difference: bpref of a query without a relevant judgment (R = 0) is 0, the value ranx stores
for it; but ranx gets there by dividing by zero inside a parallel numba loop, and the swallowed exception also
leaves every later query of the same thread's chunk at 0 (which ones depends on the thread count). Here only
that query is 0.

Doc ids are compared as strings; ranx compares 64-bit hashes cast to float64, which could merge two ids with a
chance of about 2^-53 per pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

# numba's quicksort switches to insertion sort below this many elements (numba/misc/quicksort.py).
_SMALL_QUICKSORT = 15


@dataclass(frozen=True)
class MetricSpec:
    """A parsed ranx metric name: ``mrr@10-l2`` -> family "mrr", k 10, relevance level 2.

    Attributes:
        family: ranx's metric family (``ndcg``, ``mrr``, ``map``, ...).
        k: Cut-off (0 = whole ranking), or the persistence p for ``rbp``.
        rel_lvl: Lowest relevant grade.
    """

    family: str
    k: float
    rel_lvl: int


def parse_metric(metric: str) -> MetricSpec:
    """Parse a ranx metric name exactly as ``ranx.meta.evaluate.extract_metric_and_params`` does.

    ``ndcg@10`` -> (ndcg, 10, 1); ``map`` -> (map, 0, 1); ``mrr@10-l2`` -> (mrr, 10, 2); ``rbp.95`` -> (rbp, 0.95, 1).

    Raises:
        ValueError: An unknown family, a cut-off or level that is not an integer, or ``rbp`` without p.
    """
    rel_lvl = "1"
    name = metric
    if "-l" in name:
        name, rel_lvl = name.split("-l")
    if "rbp" in name:
        if "." in name:
            family, p = name.split(".")[:2]
        elif "@" in name:
            family, p = name.split("@")[:2]
        else:
            raise ValueError("RBP requires persistence value. Example: `rpb.95`")
        k: float = float(f"0.{p}")
    else:
        parts = name.split("@")
        family = parts[0]
        k = int(parts[1]) if len(parts) > 1 else 0
    if family not in _METRICS:
        raise ValueError(f"unknown ranx metric {metric!r} (families: {sorted(_METRICS)})")
    return MetricSpec(family, k, int(rel_lvl))


def _lt(a: float, b: float) -> bool:
    """numba's ``lt_floats``: a < b, with NaN greater than every number."""
    return a < b or (b != b and a == a)  # x != x: NaN, without a function call in this hot loop


def numba_argsort(keys: list[float]) -> list[int]:
    """The permutation numba's ``np.argsort(keys)`` (kind "quicksort") returns, replayed in Python.

    A line-by-line port of ``numba.misc.quicksort.make_quicksort_impl`` (argsort, float keys): median-of-three
    partitioning down to 15 elements, then insertion sort. Its order of equal keys is what ranx ranks ties by.
    """
    order = list(range(len(keys)))
    if len(keys) < 2:
        return order
    stack = [(0, len(keys) - 1)]
    while stack:
        low, high = stack.pop()
        while high - low >= _SMALL_QUICKSORT:
            i = _partition(keys, order, low, high)
            # Push the larger side, loop on the smaller one.
            if high - i > i - low:
                if high > i:
                    stack.append((i + 1, high))
                high = i - 1
            else:
                if i > low:
                    stack.append((low, i - 1))
                low = i + 1
        _insertion_sort(keys, order, low, high)
    return order


def _insertion_sort(keys: list[float], order: list[int], low: int, high: int) -> None:
    for i in range(low + 1, high + 1):
        index = order[i]
        value = keys[index]
        j = i
        while j > low and _lt(value, keys[order[j - 1]]):
            order[j] = order[j - 1]
            j -= 1
        order[j] = index


def _partition(keys: list[float], order: list[int], low: int, high: int) -> int:
    mid = (low + high) >> 1
    if _lt(keys[order[mid]], keys[order[low]]):
        order[low], order[mid] = order[mid], order[low]
    if _lt(keys[order[high]], keys[order[mid]]):
        order[high], order[mid] = order[mid], order[high]
    if _lt(keys[order[mid]], keys[order[low]]):
        order[low], order[mid] = order[mid], order[low]
    pivot = keys[order[mid]]
    order[high], order[mid] = order[mid], order[high]
    i, j = low, high - 1
    while True:
        while i < high and _lt(keys[order[i]], pivot):
            i += 1
        while j >= low and _lt(pivot, keys[order[j]]):
            j -= 1
        if i >= j:
            break
        order[i], order[j] = order[j], order[i]
        i += 1
        j -= 1
    order[i], order[high] = order[high], order[i]
    return i


@dataclass(frozen=True)
class _Query:
    """One query as ranx sees it: judgments, and the grade of every candidate in ranx's rank order."""

    judged_grades: np.ndarray  # int64, every judgment of the query
    grades: np.ndarray  # int64 per rank, 0 where unjudged
    judged: np.ndarray  # bool per rank


def _ranked(judgments: Mapping[str, int], ranking: Mapping[str, float]) -> _Query:
    judged_grades = np.array(list(judgments.values()), dtype=int)
    grade_of = dict(zip(judgments, judged_grades.tolist(), strict=True))
    docs = list(ranking)
    keys = -np.array(list(ranking.values()), dtype=float)  # ranx argsorts the negated scores
    grades = np.array([grade_of.get(doc, 0) for doc in docs], dtype=np.int64)
    judged = np.array([doc in grade_of for doc in docs], dtype=bool)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    tied = (sorted_keys[1:] == sorted_keys[:-1]) | (np.isnan(sorted_keys[1:]) & np.isnan(sorted_keys[:-1]))
    if tied.any():
        g, j = grades[order], judged[order]
        if (tied & ((g[1:] != g[:-1]) | (j[1:] != j[:-1]))).any():
            order = np.array(numba_argsort(keys.tolist()), dtype=np.intp)
    return _Query(judged_grades, grades[order], judged[order])


def _sequential_sum(values: np.ndarray) -> float:
    """Left-to-right sum, as numba's ``np.sum`` loop adds (numpy's pairwise sum rounds differently)."""
    return float(np.cumsum(values)[-1]) if values.size else 0.0


def _cut(k: int, length: int) -> int:
    """ranx's ``fix_k``: the whole list for k = 0 or k beyond its end."""
    return length if k == 0 or k > length else k


def _relevant(q: _Query, rel_lvl: int) -> np.ndarray:
    return q.judged & (q.grades >= rel_lvl)


def _n_relevant(q: _Query, rel_lvl: int) -> int:
    return int(np.count_nonzero(q.judged_grades >= rel_lvl))


def _hits(q: _Query, k: int, rel_lvl: int) -> float:
    if _n_relevant(q, rel_lvl) == 0:
        return 0.0
    return float(np.count_nonzero(_relevant(q, rel_lvl)[: _cut(k, q.grades.size)]))


def _hit_rate(q: _Query, k: int, rel_lvl: int) -> float:
    return 1.0 if _hits(q, k, rel_lvl) > 0 else 0.0


def _precision(q: _Query, k: int, rel_lvl: int) -> float:
    k = k if k != 0 else q.grades.size
    return 0.0 if k == 0 else _hits(q, k, rel_lvl) / k


def _recall(q: _Query, k: int, rel_lvl: int) -> float:
    n_relevant = _n_relevant(q, rel_lvl)
    k = k if k != 0 else q.grades.size
    if n_relevant == 0 or k == 0:
        return 0.0
    return _hits(q, k, rel_lvl) / n_relevant


def _f1(q: _Query, k: int, rel_lvl: int) -> float:
    n_relevant = _n_relevant(q, rel_lvl)
    k = k if k != 0 else q.grades.size
    if n_relevant == 0 or k == 0:
        return 0.0
    hits = _hits(q, k, rel_lvl)
    precision, recall = hits / k, hits / n_relevant
    if precision + recall == 0:
        return 0.0
    return 2 * ((precision * recall) / (precision + recall))


def _r_precision(q: _Query, k: int, rel_lvl: int) -> float:
    n_relevant = _n_relevant(q, rel_lvl)
    return 0.0 if n_relevant == 0 else _precision(q, n_relevant, rel_lvl)


def _reciprocal_rank(q: _Query, k: int, rel_lvl: int) -> float:
    if _n_relevant(q, rel_lvl) == 0:
        return 0.0
    ranks = np.flatnonzero(_relevant(q, rel_lvl)[: _cut(k, q.grades.size)])
    return 1 / (int(ranks[0]) + 1) if ranks.size else 0.0


def _average_precision(q: _Query, k: int, rel_lvl: int) -> float:
    n_relevant = _n_relevant(q, rel_lvl)
    if n_relevant == 0:
        return 0.0
    hit_list = _relevant(q, rel_lvl)[: _cut(k, q.grades.size)]
    ranks = np.flatnonzero(hit_list)
    precisions = np.cumsum(hit_list, dtype=np.float64)[ranks] / (ranks + 1)
    return _sequential_sum(precisions) / n_relevant


def _dcg_of(grades: np.ndarray, jarvelin: bool) -> float:
    """Sum over ranks r = 1.. of gain / log2(r + 1), left to right."""
    gains = grades if jarvelin else 2**grades - 1
    return _sequential_sum(gains / np.log2(np.arange(1, grades.size + 1) + 1))


def _dcg(q: _Query, k: int, rel_lvl: int, jarvelin: bool = True) -> float:
    if _n_relevant(q, rel_lvl) == 0:
        return 0.0
    cut = _cut(k, q.grades.size)
    return _dcg_of(np.where(_relevant(q, rel_lvl), q.grades, 0)[:cut].astype(np.float64), jarvelin)


def _ndcg(q: _Query, k: int, rel_lvl: int, jarvelin: bool = True) -> float:
    dcg = _dcg(q, k, rel_lvl, jarvelin)
    # ranx's ideal ranking is its judgments sorted by grade, cut at min(k, number of judgments).
    ideal = np.sort(q.judged_grades)[::-1][: _cut(k, q.judged_grades.size)]
    idcg = 0.0
    if _n_relevant(q, rel_lvl):
        idcg = _dcg_of(np.where(ideal >= rel_lvl, ideal, 0).astype(np.float64), jarvelin)
    return dcg / (idcg if idcg != 0.0 else 1.0)


def _rank_biased_precision(q: _Query, p: float, rel_lvl: int) -> float:
    if _n_relevant(q, rel_lvl) == 0:
        return 0.0
    weights = np.where(_relevant(q, rel_lvl), q.grades, 0).astype(np.float64)
    return (1 - p) * _sequential_sum(weights * p ** np.arange(weights.size))


def _bpref(q: _Query, k: int, rel_lvl: int) -> float:
    n_relevant = _n_relevant(q, rel_lvl)
    if n_relevant == 0:
        return 0.0  # ranx: a ZeroDivisionError swallowed by its parallel loop (see the module docstring)
    n_non_relevant = int(np.count_nonzero(q.judged_grades < rel_lvl))
    hit_list = _relevant(q, rel_lvl)[q.judged]
    above = np.minimum(np.cumsum(~hit_list)[hit_list], n_relevant)
    with np.errstate(divide="ignore", invalid="ignore"):  # N = 0: 0 / 0 = NaN, as in ranx
        return _sequential_sum(1.0 - above / min(n_relevant, n_non_relevant)) / n_relevant


_METRICS: dict[str, Callable[[_Query, float, int], float]] = {
    "hits": _hits,
    "hit_rate": _hit_rate,
    "precision": _precision,
    "recall": _recall,
    "f1": _f1,
    "r-precision": _r_precision,
    "mrr": _reciprocal_rank,
    "map": _average_precision,
    "dcg": _dcg,
    "dcg_burges": lambda q, k, rel_lvl: _dcg(q, k, rel_lvl, jarvelin=False),
    "ndcg": _ndcg,
    "ndcg_burges": lambda q, k, rel_lvl: _ndcg(q, k, rel_lvl, jarvelin=False),
    "bpref": _bpref,
    "rbp": _rank_biased_precision,
}
METRIC_FAMILIES = frozenset(_METRICS)


def evaluate(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], metrics: list[str]
) -> dict[str, dict[str, float]]:
    """Per-query values of ranx metrics, as ``ranx.evaluate(Qrels(qrels), Run(run), metrics)`` stores them.

    Args:
        qrels: qid -> doc id -> grade; its queries are the ones evaluated.
        run: qid -> doc id -> score; a query it lacks is an empty ranking.
        metrics: ranx metric names (``ndcg@10``, ``mrr@10-l2``, ``map``, ``rbp.95``).

    Returns:
        metric -> qid -> value, for every query of ``qrels``.

    Raises:
        ValueError: A metric name ranx would not accept.
    """
    specs = {metric: parse_metric(metric) for metric in metrics}
    queries = {qid: _ranked(judgments, run.get(qid, {})) for qid, judgments in qrels.items()}
    return {
        metric: {qid: float(_METRICS[spec.family](q, spec.k, spec.rel_lvl)) for qid, q in queries.items()}
        for metric, spec in specs.items()
    }
