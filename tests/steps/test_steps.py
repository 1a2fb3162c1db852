"""Steps called through ``.entrypoint()``: the same code a run executes, without an orchestrator."""

import pytest

from finetune.data.demo import write_demo_msmarco
from finetune.data.types import DataFormatError, TrecRun
from finetune.params import MiningParams, RankingDataParams, RankingEvalParams, RetrievalParams
from steps.data.fingerprint_sources import fingerprint_sources
from steps.data.load_msmarco import load_msmarco
from steps.data.mine_hard_negatives import mine_hard_negatives
from steps.data.retrieve_first_stage import retrieve_first_stage
from steps.evaluate.build_ranking_report import build_ranking_report
from steps.evaluate.evaluate_reranker import evaluate_reranker


@pytest.fixture
def data_params(tmp_path) -> RankingDataParams:
    files = write_demo_msmarco(tmp_path, num_queries=12, passages_per_query=8, seed=1)
    return RankingDataParams.model_validate({
        "train": {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}},
        "eval_fraction": 0.25,
    })


def test_fingerprints_follow_the_bytes(data_params):
    import hashlib

    before = fingerprint_sources.entrypoint(data_params)
    assert before["train/qrels"] == hashlib.sha256(data_params.train.qrels.read_bytes()).hexdigest()
    data_params.train.qrels.write_text(data_params.train.qrels.read_text() + "\n")
    after = fingerprint_sources.entrypoint(data_params)
    assert after["train/qrels"] != before["train/qrels"] and after["train/collection"] == before["train/collection"]


def test_load_splits_disjointly_and_reports_bad_lines(data_params):
    fingerprints = fingerprint_sources.entrypoint(data_params)
    train_set, eval_set = load_msmarco.entrypoint(data_params, fingerprints)
    assert len(eval_set.queries) == 3 and len(train_set.queries) == 9  # round(12 × 0.25) = 3
    assert not set(train_set.queries) & set(eval_set.queries)
    data_params.train.queries.write_text("1\tfine\n2\textra\tcolumn\n")
    with pytest.raises(DataFormatError, match=rf"^{data_params.train.queries}:2: "):
        load_msmarco.entrypoint(data_params, fingerprints)


def test_first_stage_mining_evaluation_and_report(data_params):
    train_set, eval_set = load_msmarco.entrypoint(data_params, {})
    train_run, eval_run = retrieve_first_stage.entrypoint(train_set, eval_set, RetrievalParams(k=8))
    assert set(eval_run.scores) <= set(eval_set.queries) and all(len(v) <= 8 for v in eval_run.scores.values())
    pairs = mine_hard_negatives.entrypoint(train_set, train_run, MiningParams(negatives_per_positive=2))
    assert set(pairs.qid) <= set(train_set.queries)

    # An "oracle" candidate that ranks by the true grades must beat BM25 on nDCG@10 unless BM25 is already ideal.
    oracle = TrecRun("cross_encoder", {q: {p: float(g) for p, g in eval_set.qrels[q].items()} for q in eval_set.qrels})
    evaluation = RankingEvalParams(metrics=("ndcg@10", "mrr@10"), relevance_level=2)
    metrics, comparison = evaluate_reranker.entrypoint(eval_set, eval_run, oracle, evaluation)
    assert metrics["test_ndcg@10"] == pytest.approx(1.0)
    assert metrics["bm25_test_ndcg@10"] <= 1.0 and "p_value_test_ndcg@10" in metrics

    decision = {"promote": True, "stage": "production", "reason": "no production version yet"}
    html = build_ranking_report.entrypoint(comparison, [{"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.5}],
                                           {"docs_per_second": 123.4}, decision, {"train/qrels": "ab" * 32},
                                           evaluation)
    assert "promoted to production" in html and "123.4" in html and html.count("data:image/png;base64,") >= 3
