"""Distillation: teacher scoring, cross-encoder loss golden values, dataset layouts, students from teachers."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from finetune.data.types import RankingSet
from finetune.params import (
    CrossEncoderDistillationParams,
    CrossEncoderParams,
    DualEncoderParams,
    RankingEvalParams,
    TinyBertModel,
    TrainingParams,
)
from finetune.ranking import distillation as dist
from finetune.ranking import dual_encoder as de
from finetune.ranking.cross_encoder import PAIR_COLUMNS

TINY = TinyBertModel(vocab_size=150)
FAST = TrainingParams(max_steps=4, per_device_batch_size=4, learning_rate=1e-3, warmup_ratio=0.0, max_length=32,
                      logging_steps=1, device="cpu", precision="fp32")


def _pairs(n_groups=6, negatives=2) -> pd.DataFrame:
    rows = []
    for g in range(n_groups):
        query = f"capital city number {g}"
        rows.append(dict(group=g, qid=str(g), query=query, pid=f"p{g}", passage=f"the capital city {g} is big",
                         grade=1, role="positive"))
        rows += [dict(group=g, qid=str(g), query=query, pid=f"n{g}_{i}", passage=f"a river {g} {i} flows south",
                      grade=0, role="negative") for i in range(negatives)]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def _texts():
    return _pairs()["query"].tolist() + _pairs()["passage"].tolist()


@pytest.fixture(scope="module")
def dual_teacher(tmp_path_factory):
    """A saved tiny bi-encoder (4 layers, cosine) used as a teacher."""
    root = tmp_path_factory.mktemp("dual_teacher")
    spec = TinyBertModel(vocab_size=150, num_layers=4)
    path, _, _ = dist.save_encoder(spec, "dual_encoder", root / "model", _texts())
    return path


@pytest.fixture(scope="module")
def cross_teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("cross_teacher")
    path, description, parameters = dist.save_encoder(TinyBertModel(vocab_size=150, num_layers=4), "cross_encoder",
                                                      root / "model", _texts())
    assert description.startswith("cross_encoder tiny_bert") and parameters > 0
    return path


def lookup_cross_encoder(path, table):
    """A real (tiny) CrossEncoder whose logit for each (query, passage) is read from ``table`` instead."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(path), device="cpu")
    model.preprocess = lambda pairs, prompt=None, task=None: {"pairs": [tuple(p) for p in pairs]}
    model.forward = lambda features: {"scores": torch.tensor([table[p] for p in features["pairs"]])}
    return model


def test_cross_encoder_margin_mse_golden_value(cross_teacher):
    """Student logits 3 (positive), 1 and 2.5 (negatives) → margins 2, 0.5; teacher scores (2, 1, 1) → 1, 1.

    MSE = ((2 − 1)² + (0.5 − 1)²) / 2 = (1 + 0.25) / 2 = 0.625.
    """
    model = lookup_cross_encoder(cross_teacher, {("q", "p"): 3.0, ("q", "n1"): 1.0, ("q", "n2"): 2.5})
    dataset = dist.cross_encoder_dataset(
        pd.DataFrame({"group": [0, 0, 0], "query": ["q"] * 3, "passage": ["p", "n1", "n2"],
                      "teacher_score": [2.0, 1.0, 1.0]}), "margin_mse")
    row = dataset[0]
    loss = dist.cross_encoder_loss(model, "margin_mse")
    value = loss([[row["query"]], [row["positive"]], [row["negative_1"]], [row["negative_2"]]],
                 torch.tensor([row["label"]]))
    assert value.item() == pytest.approx(0.625)


def test_cross_encoder_kl_golden_value(cross_teacher):
    """Student logits (ln 4, 0, 0) → softmax (2/3, 1/6, 1/6); teacher scores (0, 0, 0) → (1/3, 1/3, 1/3).

    ListNet's cross-entropy −Σ t·ln s = −(ln(2/3) + 2·ln(1/6))/3 = (ln 1.5 + 2 ln 6)/3 ≈ 1.3297, which is
    KL(t ‖ s) = ln 2 / 3 ≈ 0.2310 plus the teacher's entropy ln 3 ≈ 1.0986.
    """
    model = lookup_cross_encoder(cross_teacher, {("q", "p"): math.log(4), ("q", "n1"): 0.0, ("q", "n2"): 0.0})
    frame = pd.DataFrame({"group": [0, 0, 0], "query": ["q"] * 3, "passage": ["p", "n1", "n2"],
                          "teacher_score": [0.0, 0.0, 0.0]})
    row = dist.cross_encoder_dataset(frame, "kl")[0]
    value = dist.cross_encoder_loss(model, "kl")([[row["query"]], [row["docs"]]], [torch.tensor(row["labels"])])
    assert value.item() == pytest.approx((math.log(1.5) + 2 * math.log(6)) / 3, rel=1e-5)
    assert value.item() == pytest.approx(math.log(2) / 3 + math.log(3), rel=1e-5)


def test_cross_encoder_kl_with_label_weight_golden_value(cross_teacher):
    """label_weight 0.5, teacher scores (0, 0, 0) → target 0.5·(1/3, 1/3, 1/3) + 0.5·(1, 0, 0) = (2/3, 1/6, 1/6).

    Student logits (ln 4, 0, 0) have that very softmax, so the loss is the target's entropy
    (2/3)·ln 1.5 + (1/3)·ln 6 ≈ 0.8676 (KL 0); an unlabeled group in the same set keeps the teacher's labels.
    """
    model = lookup_cross_encoder(cross_teacher, {("q", "p"): math.log(4), ("q", "n1"): 0.0, ("q", "n2"): 0.0})
    frame = pd.DataFrame({"group": [0, 0, 0, 1, 1, 1], "query": ["q"] * 6, "passage": ["p", "n1", "n2"] * 2,
                          "role": ["positive", "negative", "negative"] + ["candidate"] * 3,
                          "teacher_score": [0.0] * 6})
    dataset = dist.cross_encoder_dataset(frame, "kl", label_weight=0.5)
    assert np.exp(dataset[0]["labels"]) == pytest.approx([2 / 3, 1 / 6, 1 / 6])
    assert dataset[1]["labels"] == [0.0, 0.0, 0.0]
    row = dataset[0]
    value = dist.cross_encoder_loss(model, "kl")([[row["query"]], [row["docs"]]], [torch.tensor(row["labels"])])
    assert value.item() == pytest.approx(2 / 3 * math.log(1.5) + math.log(6) / 3, rel=1e-5)
    with pytest.raises(ValueError, match="'role' column"):
        dist.cross_encoder_dataset(frame.drop(columns="role"), "kl", label_weight=0.5)


def test_label_weight_is_refused_without_the_listwise_loss():
    with pytest.raises(ValueError, match="label_weight 0.3 .* needs loss: kl"):
        CrossEncoderDistillationParams(loss="margin_mse", label_weight=0.3)
    with pytest.raises(ValueError, match="needs cross_encoder.teacher_loss: kl"):
        CrossEncoderParams(teacher_loss="mse", label_weight=0.3)
    assert CrossEncoderParams(label_weight=0.3).as_student().label_weight == 0.3


def test_cross_encoder_dataset_layouts():
    frame = _pairs(n_groups=2, negatives=2)
    frame["teacher_score"] = [4.0, 1.0, 2.0, 6.0, 0.0, 2.0]
    mse = dist.cross_encoder_dataset(frame, "mse")
    assert len(mse) == 6 and mse["label"] == [4.0, 1.0, 2.0, 6.0, 0.0, 2.0]
    kl = dist.cross_encoder_dataset(frame, "kl", temperature=2.0)
    assert kl[1]["docs"] == ["the capital city 1 is big", "a river 1 0 flows south", "a river 1 1 flows south"]
    assert kl[1]["labels"] == [3.0, 0.0, 1.0]  # teacher scores / temperature 2
    assert dist.cross_encoder_dataset(frame, "margin_mse")[0]["label"] == [4.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="unknown distillation loss"):
        dist.cross_encoder_dataset(frame, "hinge")


def test_teacher_scores_equal_the_teachers_own_similarities(dual_teacher):
    pairs = _pairs()
    scored, seconds = dist.score_teacher(pairs, dual_teacher, "dual_encoder", batch_size=4, device="cpu")
    assert list(scored.columns) == [*PAIR_COLUMNS, "teacher_score"] and seconds > 0
    model = de.load_dual_encoder(dual_teacher, device="cpu")
    q = model.encode_query(pairs["query"].tolist(), convert_to_tensor=True)
    p = model.encode_document(pairs["passage"].tolist(), convert_to_tensor=True)
    expected = torch.nn.functional.cosine_similarity(q, p).numpy()
    np.testing.assert_allclose(scored["teacher_score"].to_numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="unknown model architecture"):
        dist.score_teacher(pairs, dual_teacher, "colbert")


def test_cross_encoder_teacher_scores_are_its_logits(cross_teacher):
    from sentence_transformers import CrossEncoder

    pairs = _pairs(n_groups=2)
    scored, _ = dist.score_teacher(pairs, cross_teacher, "cross_encoder", device="cpu")
    model = CrossEncoder(str(cross_teacher), device="cpu", activation_fn=torch.nn.Identity())
    expected = model.predict(list(zip(pairs["query"], pairs["passage"], strict=True)), convert_to_numpy=True)
    np.testing.assert_allclose(scored["teacher_score"].to_numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("loss", ["margin_mse", "mse", "kl"])
def test_cross_encoder_student_from_the_teacher_keeps_every_other_layer(cross_teacher, tmp_path, loss):
    frame, _ = dist.score_teacher(_pairs(), cross_teacher, "cross_encoder", device="cpu")
    params = CrossEncoderDistillationParams(student="teacher", loss=loss, training=FAST)
    result = dist.train_cross_encoder_student(frame, params, tmp_path, cross_teacher, "tiny teacher")
    assert json.loads((result.model_dir / "config.json").read_text())["num_hidden_layers"] == 2
    assert result.base_model == "teacher (tiny teacher), layers [0, 2]"
    assert len(result.log_history) == 4 and all(math.isfinite(e["loss"]) for e in result.log_history)
    from sentence_transformers import CrossEncoder

    assert result.num_parameters < sum(p.numel() for p in CrossEncoder(str(cross_teacher)).parameters())


def test_student_from_a_spec_with_chosen_layers(tmp_path):
    frame = _pairs()
    frame["teacher_score"] = [3.0 if r == "positive" else 0.0 for r in frame["role"]]
    params = CrossEncoderDistillationParams(student=TinyBertModel(vocab_size=150, num_layers=3), keep_layers=(2,),
                                            training=FAST)
    result = dist.train_cross_encoder_student(frame, params, tmp_path, teacher_dir="unused")
    assert json.loads((result.model_dir / "config.json").read_text())["num_hidden_layers"] == 1
    assert result.base_model.endswith("layers [2]")


def test_dual_encoder_student_from_a_teacher_learns_its_margins(dual_teacher, tmp_path):
    """MarginMSE on one fixed batch: the student (2 of the teacher's 4 layers) moves towards the teacher's margins."""
    frame, _ = dist.score_teacher(_pairs(), dual_teacher, "dual_encoder", device="cpu")
    frame["teacher_score"] = [0.9 if r == "positive" else -0.5 for r in frame["role"]]  # a clear target margin
    training = FAST.model_copy(update={"per_device_batch_size": 6, "max_steps": 8, "learning_rate": 3e-4})
    params = DualEncoderParams(loss="margin_mse", training=training)
    result = de.train_dual_encoder(frame, params, tmp_path, base_path=dual_teacher, base_description="teacher",
                                   default_every_other=True)
    assert result.kept_layers == (0, 2)
    losses = [e["loss"] for e in result.log_history]
    assert losses[-1] < losses[0]


def test_teacher_against_itself_is_a_tie(dual_teacher):
    data = RankingSet("t", {"a": "the capital city 1 is big", "b": "a river 1 0 flows south", "c": "dogs bark"},
                      {"1": "capital city number 1", "2": "a river"}, {"1": {"a": 2}, "2": {"b": 1}})
    first_stage = {"1": {"b": 3.0, "c": 2.0, "a": 1.0}, "2": {"a": 2.0, "b": 1.0}}
    same = (dual_teacher, "dual_encoder", 100)
    result = dist.compare_teacher_student(same, same, data, first_stage, "bm25",
                                          RankingEvalParams(rerank_depth=3, metrics=("ndcg@10", "mrr@10")))
    assert result.metrics["test_ndcg@10"] == result.metrics["teacher_test_ndcg@10"]
    assert result.metrics["student_teacher_ratio_test_ndcg@10"] == pytest.approx(1.0)
    # The student's paired test is against the teacher (a tie: p = 1), not the teacher's against the first stage.
    assert result.metrics["p_value_test_ndcg@10_vs_teacher"] == 1.0
    assert result.metrics["significant_test_ndcg@10_vs_teacher"] == 0.0
    assert result.metrics["p_value_teacher_test_ndcg@10"] == result.comparison.p_values["teacher"]["ndcg@10"]
    assert result.stats["pairs_scored"] == 5.0 and result.stats["docs_per_second"] > 0
    assert result.stats["teacher_num_parameters"] == result.stats["student_num_parameters"] == 100.0


def test_distillation_parameters():
    from pydantic import ValidationError

    from finetune.params import DualEncoderDistillationParams, RegisteredModel, TeacherParams

    teacher = TeacherParams.model_validate({"model": {"kind": "registered", "name": "reranker", "version": "3"}})
    assert teacher.model == RegisteredModel(name="reranker", version="3")
    assert TeacherParams.model_validate({"model": {"kind": "registered", "name": "r"}}).model.version == "production"
    with pytest.raises(ValidationError, match="use 'margin_mse', 'kl' or 'embedding_mse'"):
        DualEncoderDistillationParams.model_validate({"student": {"loss": "mnrl"}})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        CrossEncoderDistillationParams.model_validate({"keep_layer": [0]})
    assert CrossEncoderDistillationParams.model_validate({"student": "teacher", "keep_layers": [0, 2]}).keep_layers \
        == (0, 2)


def test_speed_is_the_median_of_alternating_repetitions(monkeypatch):
    """Three repetitions: student first, then teacher first, then student first again. The student scores 100 docs in
    1, 2 and 1 s (100, 50, 100 docs/s), the teacher in 2, 2 and 4 s (50, 50, 25): medians 100 and 50 docs/s, ratios
    2, 1, 4 → speed-up 2 (the median ratio), range 1 to 4; the rankings are the first repetition's."""
    from finetune.ranking.cross_encoder import RerankResult

    seconds = {"student": [1.0, 2.0, 1.0], "teacher": [2.0, 2.0, 4.0]}
    calls = []

    def fake_rerank(path, arch, data, first_stage, depth, batch_size, max_length, precision):
        calls.append(path)
        run = {"1": {"a": float(len(calls))}, "2": {"b": 1.0}}
        return RerankResult(run=run, pairs_scored=100, seconds=seconds[path].pop(0))

    monkeypatch.setattr(dist, "rerank_with", fake_rerank)
    data = RankingSet("t", {"a": "x", "b": "y"}, {"1": "q1", "2": "q2"}, {"1": {"a": 1}, "2": {"b": 1}})
    result = dist.compare_teacher_student(("teacher", "dual_encoder", 9), ("student", "dual_encoder", 3), data,
                                          {"1": {"a": 1.0}, "2": {"b": 1.0}}, "bm25",
                                          RankingEvalParams(rerank_depth=2, metrics=("ndcg@10",), speed_repetitions=3))
    assert calls == ["student", "teacher", "teacher", "student", "student", "teacher"]
    assert result.stats["docs_per_second"] == 100.0 and result.stats["teacher_docs_per_second"] == 50.0
    assert (result.stats["speedup"], result.stats["speedup_min"], result.stats["speedup_max"]) == (2.0, 1.0, 4.0)
    assert result.runs == {"student": {"1": {"a": 1.0}, "2": {"b": 1.0}}, "teacher": {"1": {"a": 2.0}, "2": {"b": 1.0}}}


def test_student_is_tested_against_the_teacher(monkeypatch):
    """Three queries, one relevant passage each. The teacher ranks it first everywhere (nDCG@10 = 1); the student
    ranks it second on two queries (1/log2(3)). The per-query differences 0, -x, -x give t = -2 on 2 degrees of
    freedom, so the paired t-test's p is exactly 1 - 2/sqrt(6)."""
    from finetune.ranking.cross_encoder import RerankResult

    def fake_rerank(path, arch, data, first_stage, depth, batch_size, max_length, precision):
        if path == "teacher":
            run = {q: {f"{q}a": 2.0, f"{q}b": 1.0} for q in ("1", "2", "3")}
        else:
            run = {"1": {"1a": 2.0, "1b": 1.0}, "2": {"2a": 1.0, "2b": 2.0}, "3": {"3a": 1.0, "3b": 2.0}}
        return RerankResult(run=run, pairs_scored=6, seconds=1.0)

    monkeypatch.setattr(dist, "rerank_with", fake_rerank)
    docs = {f"{q}{d}": f"passage {q}{d}" for q in ("1", "2", "3") for d in ("a", "b")}
    data = RankingSet("t", docs, {"1": "q1", "2": "q2", "3": "q3"}, {q: {f"{q}a": 1} for q in ("1", "2", "3")})
    first_stage = {q: {f"{q}a": 1.0, f"{q}b": 2.0} for q in ("1", "2", "3")}
    result = dist.compare_teacher_student(("teacher", "dual_encoder", 9), ("student", "dual_encoder", 3), data,
                                          first_stage, "bm25", RankingEvalParams(rerank_depth=2, metrics=("ndcg@10",)))
    assert result.metrics["teacher_test_ndcg@10"] == 1.0
    assert result.metrics["test_ndcg@10"] == pytest.approx((1 + 2 / np.log2(3)) / 3)
    assert result.metrics["p_value_test_ndcg@10_vs_teacher"] == pytest.approx(1 - 2 / np.sqrt(6))
    assert result.metrics["significant_test_ndcg@10_vs_teacher"] == 0.0


@pytest.fixture
def drawn_batches(monkeypatch):
    """Every batch a LengthGroupedBatchSampler hands to a trainer, in order."""
    from finetune.ranking.batching import LengthGroupedBatchSampler

    drawn: list[tuple[list[int], list[int]]] = []  # (row indices, their token lengths)
    original = LengthGroupedBatchSampler.__iter__

    def recording(self):
        for batch in original(self):
            drawn.append((batch, [int(self.lengths[i]) for i in batch]))
            yield batch

    monkeypatch.setattr(LengthGroupedBatchSampler, "__iter__", recording)
    return drawn


@pytest.mark.parametrize("grouped", [True, False])
def test_cross_encoder_student_trains_on_length_grouped_batches(cross_teacher, tmp_path, drawn_batches, grouped):
    pairs = _pairs(n_groups=8)
    pairs["passage"] = [p + " big" * (i % 6) for i, p in enumerate(pairs["passage"])]  # 6 different lengths
    frame, _ = dist.score_teacher(pairs, cross_teacher, "cross_encoder", device="cpu")
    params = CrossEncoderDistillationParams(student="teacher", loss="mse", training=FAST,
                                            length_grouped_batches=grouped)
    result = dist.train_cross_encoder_student(frame, params, tmp_path, cross_teacher, "tiny teacher")
    assert len(result.log_history) == 4
    if not grouped:
        assert drawn_batches == []
        return
    # 24 pairs in one mega-batch: sorted by length, so each batch of 4 spans at most 2 of the 6 lengths (the 4
    # updates draw 16 of the 24 pairs, with at least 4 different lengths among them).
    assert len({n for _, lengths in drawn_batches for n in lengths}) >= 4
    assert len(drawn_batches) >= 4 and all(len(rows) == 4 for rows, _ in drawn_batches[:4])
    assert all(len(set(lengths)) <= 2 for _, lengths in drawn_batches[:4])


def test_embedding_mse_student_trains_on_length_grouped_texts(dual_teacher, tmp_path, drawn_batches):
    """The student learns each text's embedding; queries (6 tokens) and passages (8) fall into separate batches."""
    frame, _ = dist.score_teacher(_pairs(n_groups=8), dual_teacher, "dual_encoder", device="cpu")
    params = DualEncoderParams(loss="embedding_mse", similarity="dot", training=FAST)
    result = de.train_dual_encoder(frame, params, tmp_path, base_path=dual_teacher, base_description="teacher",
                                   default_every_other=True, teacher_dir=dual_teacher)
    assert len(result.log_history) == 4 and result.train_examples == 8 + 24
    assert len(drawn_batches) >= 4 and {n for _, lengths in drawn_batches for n in lengths} == {6, 8}
    assert all(len(set(lengths)) == 1 for _, lengths in drawn_batches[:4])  # 8 queries, then passages: never mixed
