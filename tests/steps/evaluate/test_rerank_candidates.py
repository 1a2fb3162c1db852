"""rerank_candidates through ``.entrypoint()``: a tiny untrained cross-encoder rescores the first stage's top-k.

The scores must be the model's raw logit of each (query, passage) pair, which the test recomputes with plain
transformers, and only the top ``rerank_depth`` candidates of each query are scored.
"""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import steps.evaluate.rerank_candidates as module
from finetune.data.types import TrecRun
from finetune.models.directory import ModelDirectory
from finetune.models.sources import build_tiny_bert
from finetune.params import RankingEvalParams, TinyBertModel
from steps.evaluate.rerank_candidates import rerank_candidates

ORDER = ["20", "10", "12", "14", "16", "21", "11", "13"]  # the first stage's ranking, the same for every query


@pytest.fixture
def cross_encoder_dir(toy_ranking, tmp_path) -> ModelDirectory:
    texts = list(toy_ranking.queries.values()) + list(toy_ranking.corpus.values())
    path = build_tiny_bert(TinyBertModel(vocab_size=100, hidden_size=16), tmp_path / "ce", texts)
    return ModelDirectory(path, "cross_encoder", "tiny_bert", 1)


def test_the_top_k_candidates_get_the_models_logits(toy_ranking, cross_encoder_dir, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    first_stage = TrecRun("bm25", {q: {p: float(len(ORDER) - i) for i, p in enumerate(ORDER)}
                                   for q in toy_ranking.queries})
    evaluation = RankingEvalParams(rerank_depth=3, batch_size=4, metrics=("ndcg@10",))
    run, stats = rerank_candidates.entrypoint(cross_encoder_dir, toy_ranking, first_stage, evaluation, 32)

    assert run.name == "cross_encoder" and set(run.scores) == set(toy_ranking.queries)
    assert all(set(scores) == {"20", "10", "12"} for scores in run.scores.values())
    assert stats["pairs_scored"] == 12.0 and stats["docs_per_second"] > 0  # 4 queries × depth 3
    assert recorded == [{**stats, "precision": "fp32"}]

    tokenizer = AutoTokenizer.from_pretrained(cross_encoder_dir.path)
    model = AutoModelForSequenceClassification.from_pretrained(cross_encoder_dir.path).eval()
    for qid, scores in run.scores.items():
        for pid, score in scores.items():
            inputs = tokenizer(toy_ranking.queries[qid], toy_ranking.corpus[pid], return_tensors="pt",
                               truncation=True, max_length=32)
            with torch.no_grad():
                logit = model(**inputs).logits[0, 0].item()
            assert score == pytest.approx(logit, abs=1e-5), (qid, pid)


def test_a_query_without_first_stage_candidates_gets_an_empty_ranking(toy_ranking, cross_encoder_dir):
    first_stage = TrecRun("bm25", {"1": {"10": 2.0, "11": 1.0}})
    run, stats = rerank_candidates.entrypoint(cross_encoder_dir, toy_ranking, first_stage,
                                              RankingEvalParams(rerank_depth=5, metrics=("ndcg@10",)), 32)
    assert set(run.scores["1"]) == {"10", "11"} and run.scores["2"] == run.scores["3"] == run.scores["4"] == {}
    assert stats["pairs_scored"] == 2.0
