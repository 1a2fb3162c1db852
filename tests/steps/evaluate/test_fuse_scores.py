"""fuse_scores through ``.entrypoint()``: per-query min-max scores mixed with the configured weights.

Reranker a 5, b 1, c 3 → 1, 0, 0.5; BM25 a 10, b 20, c 15 → 0, 1, 0.5; starting model a 0, b 1 (c unscored)
→ 0, 1, (0). Weights: reranker 1 − 0.2 − 0.1 = 0.7, first stage 0.2, starting point 0.1:
a = 0.7·1 = 0.7; b = 0.2·1 + 0.1·1 = 0.3; c = 0.7·0.5 + 0.2·0.5 + 0 = 0.45.
"""

import pytest

import steps.evaluate.fuse_scores as module
from finetune.data.types import TrecRun
from finetune.params import FusionParams
from steps.evaluate.fuse_scores import fuse_scores

RERANKED = TrecRun("cross_encoder", {"q1": {"a": 5.0, "b": 1.0, "c": 3.0}, "q2": {"x": 2.0, "y": 2.0}})
BM25 = TrecRun("bm25", {"q1": {"a": 10.0, "b": 20.0, "c": 15.0, "not_reranked": 30.0}, "q2": {"x": 1.0, "y": 3.0}})
START = TrecRun("zero_shot", {"q1": {"a": 0.0, "b": 1.0}})


def test_scores_are_mixed_per_query_over_the_reranked_candidates(monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    fused = fuse_scores.entrypoint(RERANKED, BM25, START, FusionParams(first_stage=0.2, starting_point=0.1))
    assert fused.name == "fused" and set(fused.scores) == {"q1", "q2"}
    assert fused.scores["q1"] == pytest.approx({"a": 0.7, "b": 0.3, "c": 0.45})
    # q2: the reranker ties (both 0), BM25 splits them (0, 1), the starting model scored neither.
    assert fused.scores["q2"] == pytest.approx({"x": 0.0, "y": 0.2})
    assert recorded[0]["weights"] == pytest.approx({"cross_encoder": 0.7, "bm25": 0.2, "zero_shot": 0.1})


def test_zero_fusion_weights_keep_the_rerankers_order_on_a_zero_to_one_scale():
    fused = fuse_scores.entrypoint(RERANKED, BM25, START, FusionParams())
    assert fused.scores["q1"] == {"a": 1.0, "b": 0.0, "c": 0.5}
