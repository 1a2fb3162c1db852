"""rerank_starting_point through ``.entrypoint()``: the untrained starting model reranks the same candidates.

A tiny BERT spec is a one-logit sequence classifier, so it scores as a cross-encoder; a sentence-transformers
directory (a bi-encoder) scores by the cosine similarity of its embeddings, which the test recomputes.
"""

import pandas as pd
import pytest

import steps.evaluate.rerank_starting_point as module
from finetune.data.types import TrecRun
from finetune.params import RankingEvalParams, TinyBertModel
from finetune.ranking.distillation import save_encoder
from steps.evaluate.rerank_starting_point import rerank_starting_point

EVALUATION = RankingEvalParams(rerank_depth=2, batch_size=4, metrics=("ndcg@10",))
TINY = {"kind": "tiny_bert", "vocab_size": 100, "hidden_size": 16, "seed": 3}


def _inputs(toy_ranking):
    pairs = pd.DataFrame({"query": [toy_ranking.queries[q] for q in toy_ranking.queries for _ in (0, 1)],
                          "passage": [toy_ranking.corpus[p] for q in toy_ranking.qrels for p in list(
                              toy_ranking.qrels[q])[:2]]})
    first_stage = TrecRun("bm25", {q: {"10": 3.0, "12": 2.0, "18": 1.0} for q in toy_ranking.queries})
    return pairs, first_stage


def test_a_tiny_bert_spec_reranks_as_a_cross_encoder_and_the_same_way_twice(toy_ranking, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    pairs, first_stage = _inputs(toy_ranking)
    run, stats = rerank_starting_point.entrypoint(TINY, pairs, toy_ranking, first_stage, EVALUATION, 32)
    again, _ = rerank_starting_point.entrypoint(TINY, pairs, toy_ranking, first_stage, EVALUATION, 32)
    assert run.name == "zero_shot" and recorded[0]["architecture"] == "cross_encoder"
    assert all(set(scores) == {"10", "12"} for scores in run.scores.values())  # depth 2 of the 3 candidates
    assert stats["pairs_scored"] == 8.0
    assert again.scores == run.scores  # seeded: the same untrained model each time
    other, _ = rerank_starting_point.entrypoint({**TINY, "seed": 4}, pairs, toy_ranking, first_stage, EVALUATION, 32)
    assert other.scores != run.scores  # the spec's seed is the model's


def test_a_bi_encoder_reranks_by_cosine_similarity(toy_ranking, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    texts = list(toy_ranking.queries.values()) + list(toy_ranking.corpus.values())
    path, _, _ = save_encoder(TinyBertModel(vocab_size=100, hidden_size=16), "dual_encoder", tmp_path / "bi", texts)
    pairs, first_stage = _inputs(toy_ranking)
    run, _ = rerank_starting_point.entrypoint({"kind": "local", "path": str(path)}, pairs, toy_ranking, first_stage,
                                              EVALUATION, 32)
    assert recorded[0]["architecture"] == "dual_encoder"
    encoder = SentenceTransformer(str(path), device="cpu")
    query = encoder.encode([toy_ranking.queries["2"]], normalize_embeddings=True)
    passages = encoder.encode([toy_ranking.corpus["10"], toy_ranking.corpus["12"]], normalize_embeddings=True)
    cosine = (passages @ query.T).ravel()
    assert [run.scores["2"]["10"], run.scores["2"]["12"]] == pytest.approx(cosine.tolist(), abs=1e-5)
