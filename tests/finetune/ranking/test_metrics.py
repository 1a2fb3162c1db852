"""IR metrics through ranx against hand-computed values, and paired significance tests."""

import numpy as np
import pytest

from finetune.ranking.metrics import (
    RunComparison,
    compare_runs,
    evaluate_run,
    paired_p_value,
    per_query_scores,
)

# q3 is judged but absent from RUN, so it scores 0 on every metric; "q_extra" is not judged and is ignored.
QRELS = {"q1": {"d1": 3, "d2": 1, "d3": 0}, "q2": {"d4": 2}, "q3": {"d6": 1}}
RUN = {
    "q1": {"d2": 0.9, "d1": 0.8, "d3": 0.7},
    "q2": {"d5": 1.0, "d4": 0.5},
    "q_extra": {"d1": 1.0},
}


def test_evaluate_run_matches_hand_computed_means():
    """Ranks: q1 = d2 (grade 1), d1 (3), d3 (0); q2 = d5 (unjudged), d4 (2); q3 = nothing retrieved.

    nDCG@10, linear gain rel / log2(rank + 1):
        q1 DCG = 1/1 + 3/log2(3) = 2.892789; IDCG = 3/1 + 1/log2(3) = 3.630930; nDCG = 0.796708
        q2 DCG = 2/log2(3) = 1.261860; IDCG = 2/1; nDCG = 0.630930
        mean over 3 judged queries = (0.796708 + 0.630930 + 0) / 3 = 0.475879
    MRR@10 (grade >= 1): q1 1/1, q2 1/2, q3 0 -> 0.5
    MAP@100: q1 relevant d2, d1 at ranks 1, 2 -> (1/1 + 2/2) / 2 = 1; q2 d4 at rank 2 -> 1/2; q3 0 -> 0.5
    recall@1: q1 1 of 2 relevant, q2 0 of 1, q3 0 -> 1/6;  recall@100: (1 + 1 + 0) / 3 = 2/3
    precision@2: q1 2/2, q2 1/2, q3 0 -> 0.5
    """
    metrics = ["ndcg@10", "mrr@10", "map@100", "recall@1", "recall@100", "precision@2"]
    means = evaluate_run(QRELS, RUN, metrics)

    assert means == pytest.approx(
        {
            "ndcg@10": 0.475879,
            "mrr@10": 0.5,
            "map@100": 0.5,
            "recall@1": 1 / 6,
            "recall@100": 2 / 3,
            "precision@2": 0.5,
        },
        abs=1e-6,
    )


def test_relevance_level_applies_to_binary_metrics_only():
    """relevance_level=2 (TREC DL): d2 (grade 1) and q3's d6 (grade 1) stop counting.

    MRR@10: q1 first grade >= 2 is d1 at rank 2 -> 1/2; q2 d4 at rank 2 -> 1/2; q3 none -> 0; mean 1/3.
    MAP@100: q1 d1 at rank 2 -> 1/2; q2 1/2; q3 0 -> 1/3.
    nDCG@10 keeps every positive grade as gain, so it stays 0.475879. An explicit "-l2" suffix wins over
    the argument.
    """
    means = evaluate_run(QRELS, RUN, ["ndcg@10", "mrr@10", "map@100"], relevance_level=2)
    explicit = evaluate_run(QRELS, RUN, ["mrr@10-l2"], relevance_level=1)

    assert means == pytest.approx({"ndcg@10": 0.475879, "mrr@10": 1 / 3, "map@100": 1 / 3}, abs=1e-6)
    assert explicit["mrr@10-l2"] == pytest.approx(1 / 3)


def test_per_query_scores_cover_every_judged_query():
    scores = per_query_scores(QRELS, RUN, "mrr@10")

    assert scores == {"q1": 1.0, "q2": 0.5, "q3": 0.0}
    assert per_query_scores(QRELS, {}, "ndcg@10") == {"q1": 0.0, "q2": 0.0, "q3": 0.0}


def test_unknown_metric_and_empty_qrels_are_rejected():
    with pytest.raises(ValueError, match="unknown metric 'ndgc@10'"):
        evaluate_run(QRELS, RUN, ["ndgc@10"])
    with pytest.raises(ValueError, match="qrels has no queries"):
        evaluate_run({}, RUN, ["ndcg@10"])


def test_paired_p_values_match_exact_tests():
    """Per-query differences 0.4, 0.3, 0.2, 0.1 (mean 0.25).

    Fisher: of the 2^4 = 16 sign flips only all-plus and all-minus reach |mean| >= 0.25, so the exact p is
    2/16 = 0.125; 10,000 samples estimate it within 3 standard errors (sqrt(0.125 * 0.875 / 10,000) = 0.0033).
    Student: sd = sqrt((0.15^2 + 0.05^2 + 0.05^2 + 0.15^2) / 3) = 0.129099,
    t = 0.25 / (0.129099 / sqrt(4)) = 3.872983, 3 degrees of freedom -> two-sided p = 0.030466.
    """
    candidate, baseline = np.array([0.4, 0.3, 0.2, 0.1]), np.zeros(4)

    assert paired_p_value(candidate, baseline, "fisher") == pytest.approx(0.125, abs=0.01)
    assert paired_p_value(candidate, baseline, "student") == pytest.approx(0.030466, abs=1e-6)
    assert paired_p_value(candidate, candidate, "student") == 1.0
    assert paired_p_value(candidate, candidate, "fisher") == 1.0
    with pytest.raises(ValueError, match="stat_test must be one of"):
        paired_p_value(candidate, baseline, "wilcoxon")


def _twenty_query_runs() -> tuple[dict, dict, dict]:
    """20 queries with one relevant passage "rel": baseline ranks it 2nd, 3rd or 4th; candidate 1st."""
    qrels, baseline, candidate = {}, {}, {}
    for i in range(20):
        qid = f"q{i}"
        qrels[qid] = {"rel": 1}
        above = [f"n{j}" for j in range(1 + i % 3)]
        baseline[qid] = {pid: 10.0 - r for r, pid in enumerate([*above, "rel"])}
        candidate[qid] = {pid: 10.0 - r for r, pid in enumerate(["rel", *above])}
    return qrels, baseline, candidate


@pytest.mark.parametrize("stat_test", ["student", "fisher"])
def test_compare_runs_flags_only_real_improvements(stat_test):
    """MRR@10 per query: baseline 1/2, 1/3, 1/4 repeating (7, 7, 6 times), candidate 1 everywhere.

    baseline mean = (7/2 + 7/3 + 6/4) / 20 = 0.366667; candidate 1.0; better on all 20 queries. Fisher: a sign
    flip matches that only if all 20 signs agree (chance 2 / 2^20), so none of the 10,000 samples does and
    p = (0 + 1) / (10,000 + 1). The baseline compared against itself has p = 1, and a worse run is never
    "significant" however small its p.
    """
    qrels, baseline, candidate = _twenty_query_runs()

    better = compare_runs(
        qrels,
        {"bm25": baseline, "ce": candidate, "copy": dict(baseline)},
        ["mrr@10"],
        baseline="bm25",
        stat_test=stat_test,
    )
    worse = compare_runs(
        qrels, {"ce": candidate, "bm25": baseline}, ["mrr@10"], baseline="ce", stat_test=stat_test
    )

    assert better.means["bm25"]["mrr@10"] == pytest.approx(0.366667, abs=1e-6)
    assert better.means["ce"]["mrr@10"] == 1.0
    assert better.significant == {"ce": {"mrr@10": True}, "copy": {"mrr@10": False}}
    assert better.p_values["copy"]["mrr@10"] == 1.0
    assert "bm25" not in better.p_values
    assert worse.p_values["bm25"]["mrr@10"] < 1e-3
    assert worse.significant["bm25"]["mrr@10"] is False
    if stat_test == "fisher":
        assert better.p_values["ce"]["mrr@10"] == pytest.approx(1 / 10_001)


def test_comparison_rows_and_markdown():
    comparison = RunComparison(
        baseline="bm25",
        metrics=["ndcg@10"],
        means={"bm25": {"ndcg@10": 0.5}, "ce|v2": {"ndcg@10": 0.625}},
        per_query={"bm25": {"ndcg@10": {"q1": 0.5}}, "ce|v2": {"ndcg@10": {"q1": 0.625}}},
        p_values={"ce|v2": {"ndcg@10": 0.01}},
        significant={"ce|v2": {"ndcg@10": True}},
        alpha=0.05,
        stat_test="student",
    )

    assert comparison.to_rows() == [
        {"run": "bm25", "ndcg@10": 0.5, "ndcg@10 p": None},
        {"run": "ce|v2", "ndcg@10": 0.625, "ndcg@10 p": 0.01},
    ]
    assert comparison.to_markdown().splitlines()[:4] == [
        "| run | ndcg@10 | ndcg@10 p |",
        "|---|---|---|",
        "| bm25 | 0.5000 |  |",
        "| ce\\|v2 | 0.6250 † | 0.01 |",
    ]
    assert comparison.to_markdown().endswith("(paired student test over 1 queries)")
