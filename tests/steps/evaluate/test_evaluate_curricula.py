"""evaluate_curricula through ``.entrypoint()`` on the toy judgments, with runs whose nDCG@10 is known exactly.

A run that ranks a query's grade-2 then grade-1 passage first is ideal (nDCG@10 = MRR@10 = 1); one that ranks
only unjudged passages scores 0. Standard training is ideal on q1 only (mean 0.25), bm25_root_2 on q1-q3 (0.75),
length_linear on all four (1.0). Paired t-tests against standard training: length_linear d = 0, 1, 1, 1,
mean 0.75, sd 0.5, t = 0.75 / (0.5/2) = 3, df 3 → p = 0.05767; bm25_root_2 d = 0, 1, 1, 0, mean 0.5,
sd 0.5774, t = 1.7321, df 3 → p = 0.1817.
"""

import pytest

import steps.evaluate.evaluate_curricula as module
from finetune.data.types import TrecRun
from finetune.params import RankingEvalParams
from steps.evaluate.evaluate_curricula import evaluate_curricula

EVALUATION = RankingEvalParams(metrics=("ndcg@10", "mrr@10"), relevance_level=2)
QUERIES = ["1", "2", "3", "4"]


def _run(name, toy_ranking, ideal: set[str]) -> TrecRun:
    scores = {}
    for qid in QUERIES:
        judged = toy_ranking.qrels[qid]
        if qid in ideal:
            scores[qid] = {pid: float(grade) + 1.0 for pid, grade in judged.items()}
        else:
            scores[qid] = {"18": 2.0, "19": 1.0}  # the cat and the dogs: judged for no query
    return TrecRun(name, scores)


def test_each_arm_is_tested_against_standard_training_and_the_best_feeds_the_gate(toy_ranking, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    runs = [_run("a", toy_ranking, {"1"}), _run("b", toy_ranking, {"1", "2", "3"}),
            _run("c", toy_ranking, set(QUERIES))]
    first_stage = _run("bm25", toy_ranking, {"1", "2"})
    metrics, comparison, best = evaluate_curricula.entrypoint(
        toy_ranking, first_stage, runs, ["standard_training", "bm25_root_2", "length_linear"], EVALUATION)

    assert best == "length_linear" and recorded[0]["best_arm"] == "length_linear"
    assert comparison["baseline"] == "standard_training"
    assert metrics["standard_training_test_ndcg@10"] == pytest.approx(0.25)
    assert metrics["bm25_root_2_test_ndcg@10"] == pytest.approx(0.75)
    assert metrics["length_linear_test_mrr@10"] == pytest.approx(1.0)
    assert metrics["p_value_length_linear_test_ndcg@10"] == pytest.approx(0.05767, abs=1e-5)
    assert metrics["p_value_bm25_root_2_test_ndcg@10"] == pytest.approx(0.1817, abs=1e-4)
    assert "p_value_standard_training_test_ndcg@10" not in metrics
    # What the gate reads: the best arm against the first stage (ideal on 2 of 4 queries: 0.5).
    assert metrics["test_ndcg@10"] == pytest.approx(1.0) and metrics["bm25_test_ndcg@10"] == pytest.approx(0.5)
    assert metrics["p_value_test_ndcg@10"] == pytest.approx(0.1817, abs=1e-4)
    assert metrics["significant_test_ndcg@10"] == 0.0


def test_the_starting_point_is_listed_and_tested_but_never_best(toy_ranking):
    runs = [_run("a", toy_ranking, {"1"}), _run("b", toy_ranking, {"1", "2", "3"})]
    start = _run("zero_shot", toy_ranking, set(QUERIES))  # better than every arm
    metrics, comparison, best = evaluate_curricula.entrypoint(
        toy_ranking, _run("bm25", toy_ranking, set()), runs, ["standard_training", "bm25_root_2"], EVALUATION, start)
    assert best == "bm25_root_2" and "zero_shot" in comparison["means"]
    assert metrics["zero_shot_test_ndcg@10"] == pytest.approx(1.0)
    assert metrics["significant_test_ndcg@10_vs_zero_shot"] == 0.0  # the best arm is worse than it


def test_runs_and_arm_names_must_pair_up(toy_ranking):
    with pytest.raises(ValueError, match="2 runs for 1 arm names"):
        evaluate_curricula.entrypoint(toy_ranking, _run("bm25", toy_ranking, set()),
                                      [_run("a", toy_ranking, set())] * 2, ["standard_training"], EVALUATION)
