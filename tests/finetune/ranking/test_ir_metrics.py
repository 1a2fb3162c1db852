"""The numpy metrics equal ranx's on every metric family, cut-off and relevance level, ties and edge cases included.

ranx is the reference, called as finetune.ranking.metrics called it before (doc ids aliased to 12 characters). Its
numba kernels compile once per virtualenv, 70 s for all 14 families on 2 busy cores, then load from numba's disk
cache in seconds: the two tests that call ranx are marked slow (``make test`` and CI run them, ``make test-fast``
does not).
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from finetune.params import RANX_METRICS
from finetune.ranking.ir_metrics import METRIC_FAMILIES, evaluate, numba_argsort, parse_metric

CUTOFFS = ["", "@1", "@5", "@10", "@100"]  # "" = the whole list; 100 is beyond most rankings below (1-200 long)
LEVELS = ["", "-l1", "-l2", "-l3"]  # "" = ranx's default level 1
NAMES = [
    f"{family}{cutoff}{level}"
    for family in sorted(METRIC_FAMILIES - {"rbp", "bpref"})
    for cutoff in CUTOFFS
    for level in LEVELS
] + [f"rbp.{p}{level}" for p in ("5", "8", "95") for level in LEVELS]
BPREF_NAMES = [f"bpref{level}" for level in LEVELS]


def _ranx(qrels: dict, run: dict, names: list[str]) -> dict[str, dict[str, float]]:
    """metric -> qid -> ranx's value, through ranx.Qrels / ranx.Run / ranx.evaluate."""
    import ranx
    from numba.core.errors import NumbaTypeSafetyWarning

    alias: dict[str, str] = {}

    def aliased(ranking: dict) -> dict:
        return {alias.setdefault(doc, f"{len(alias):012d}"): value for doc, value in ranking.items()}

    ranx_run = ranx.Run({qid: aliased(run[qid]) for qid in qrels})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
        ranx.evaluate(ranx.Qrels({qid: aliased(judged) for qid, judged in qrels.items()}), ranx_run, names)
    return {name: {qid: float(value) for qid, value in ranx_run.scores[name].items()} for name in names}


def _cases(seed: int = 0, n_queries: int = 90) -> tuple[dict, dict]:
    """Queries of 1 to 200 candidates whose scores tie often (a few distinct values, some NaN), judged with grades
    -1 to 3 (relevant and non-relevant ones retrieved, unretrieved, missing), so that tied candidates with
    different judgments occur both below and above numba's insertion-sort threshold (15)."""
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for i in range(n_queries):
        qid = f"q{i}"
        n = int(rng.choice([1, 2, 3, 8, 14, 15, 16, 17, 40, 120, 200]))
        docs = [f"d{int(x)}" for x in rng.choice(10 * n + 50, size=n, replace=False)]
        distinct = int(rng.choice([2, 3, 5, n + 1]))
        scores = rng.integers(0, distinct, size=n) / 4.0 - 0.25
        if i % 7 == 0:
            scores[rng.random(n) < 0.2] = np.nan
        run[qid] = dict(zip(docs, scores.tolist(), strict=True))
        judged = rng.choice(docs, size=int(rng.integers(1, n + 1)), replace=False).tolist()
        judged += [f"u{i}_{j}" for j in range(int(rng.integers(0, 4)))]  # judged, never retrieved
        top_grade = [0, 1, 2, 3][i % 4] if i % 5 == 0 else 3  # some queries have nothing relevant at level 1-3
        qrels[qid] = {doc: int(rng.integers(-1 if i % 9 == 0 else 0, top_grade + 1)) for doc in judged}
    qrels["float_grades"], run["float_grades"] = {"a": 1.7, "b": 2.2, "c": 0.4}, {"c": 3.0, "b": 2.0, "a": 1.0}
    return qrels, run


@pytest.fixture(scope="module")
def cases() -> tuple[dict, dict]:
    return _cases()


def _assert_equal(ours: dict, reference: dict) -> None:
    for name, values in reference.items():
        for qid, expected in values.items():
            got = ours[name][qid]
            assert got == pytest.approx(expected, abs=1e-12, nan_ok=True), f"{name} {qid}: {got} != ranx {expected}"


@pytest.mark.slow
def test_every_metric_equals_ranx(cases):
    """13 families × cut-offs (none, 1, 5, 10, 100) × relevance levels, and rbp for p = .5 / .8 /
    .95, per query to 1e-12 on 91 queries with ties, NaN scores, negative and float grades."""
    qrels, run = cases
    assert {name.split("@")[0].split(".")[0].split("-l")[0] for name in NAMES} | {"bpref"} == RANX_METRICS

    _assert_equal(evaluate(qrels, run, NAMES), _ranx(qrels, run, NAMES))


@pytest.mark.slow
def test_bpref_equals_ranx_query_by_query(cases):
    """bpref one query and one level at a time: ranx's parallel loop swallows the ZeroDivisionError of a query
    without a relevant judgment and leaves the rest of its thread's chunk at 0, so only single-query calls give
    ranx's own values (0 for that query; NaN, here too, when no judged document is non-relevant). Whether even a
    single-query call swallows that error or raises it depends on numba's threading, so where ranx raises, the
    query must have no judgment at that level and ours must be the 0 ranx gives when it swallows it."""
    qrels, run = cases
    ours = evaluate(qrels, run, BPREF_NAMES)
    values = [v for name in BPREF_NAMES for v in ours[name].values()]
    assert 0.0 in values and any(0 < v < 1 for v in values) and np.isnan(values).any()  # every branch is reached

    for qid in qrels:
        for name in BPREF_NAMES:
            level = int(name.split("-l")[1]) if "-l" in name else 1
            try:
                reference = _ranx({qid: qrels[qid]}, {qid: run[qid]}, [name])
            except (ZeroDivisionError, SystemError):  # numba may re-raise it wrapped in a SystemError
                assert max(qrels[qid].values()) < level, f"ranx raised for {name} {qid}, which has a relevant doc"
                assert ours[name][qid] == 0.0, f"{name} {qid}: {ours[name][qid]} != 0 (no relevant judgment)"
                continue
            _assert_equal(ours, reference)


def test_ties_with_different_judgments_follow_numba_quicksort():
    """20 candidates with one score: numba's quicksort swaps the first candidate to position 19 in its first
    partition (then insertion-sorts both halves), so the relevant "d0", listed first, ranks 19th (MRR 1/19, where
    a stable sort would give 1)."""
    qrels, run = {"q": {"d0": 1}}, {"q": {f"d{i}": 0.5 for i in range(20)}}

    assert numba_argsort([-0.5] * 20).index(0) == 18
    assert evaluate(qrels, run, ["mrr", "ndcg@10"]) == {"mrr": {"q": 1 / 19}, "ndcg@10": {"q": 0.0}}


@pytest.mark.parametrize("size", [0, 1, 2, 15, 16, 17, 50, 300])
def test_argsort_replays_numba_python_quicksort(size):
    """Against numba's own pure-Python build of the same quicksort (``make_py_quicksort``), NaN-aware comparison."""
    from numba.misc.quicksort import make_py_quicksort
    from numba.np.numpy_support import lt_floats

    reference = make_py_quicksort(lt=lt_floats, is_argsort=True, is_np_array=True).run_quicksort
    rng = np.random.default_rng(size)
    for distinct in (1, 2, 4, size + 1):
        keys = rng.integers(0, distinct, size=size).astype(np.float64)
        keys[rng.random(size) < 0.1] = np.nan
        assert numba_argsort(keys.tolist()) == reference(keys).tolist()


def test_metric_names_parse_as_ranx():
    assert parse_metric("ndcg@10") == parse_metric("ndcg@10-l1")
    assert (parse_metric("map").k, parse_metric("mrr@10-l2").rel_lvl) == (0, 2)
    assert parse_metric("rbp.95-l2").k == pytest.approx(0.95)
    with pytest.raises(ValueError, match="RBP requires persistence"):
        parse_metric("rbp")
    with pytest.raises(ValueError, match="unknown ranx metric 'ndgc@10'"):
        parse_metric("ndgc@10")


def test_evaluation_never_loads_numba():
    """Importing and running the project's metrics stays in numpy: no numba (its compile was the cold start)."""
    code = (
        "import sys; from finetune.ranking.metrics import compare_runs; "
        "compare_runs({'q': {'a': 2}}, {'x': {'q': {'a': 1.0}}, 'y': {'q': {'b': 1.0}}}, "
        "['ndcg@10', 'mrr@10', 'map@100', 'recall@100'], 'x', relevance_level=2); "
        "assert 'numba' not in sys.modules and 'ranx' not in sys.modules, 'numba or ranx was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
