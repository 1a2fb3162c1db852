"""Difficulty functions on a hand-made example, the curriculum comparison, and the sampler inside the trainer."""

import math

import numpy as np
import pandas as pd
import pytest

from finetune.curriculum import QueryCurriculum
from finetune.params import CrossEncoderParams, DifficultyParams, RankingEvalParams, TinyBertModel, TrainingParams
from finetune.ranking.cross_encoder import instance_qids, to_loss_dataset, train_cross_encoder
from finetune.ranking.curriculum import (
    bm25_candidate_scores,
    bm25_positive,
    bm25_std,
    candidate_length,
    compare_curricula,
    model_loss,
    model_prediction,
    query_length,
    random_difficulty,
    score_difficulty,
    semantic_std,
)

PASSAGES = {"p1": "zebra lion", "p2": "lion tiger lion", "p3": "tiger yak", "p4": "yak zebra"}


@pytest.fixture
def pairs():
    """Two queries, one group each: q1 "zebra" (p1 relevant; p2, p3), q2 "yak tiger" (p3 relevant; p4, p1)."""
    rows = [
        (0, "q1", "zebra", "p1", "positive"), (0, "q1", "zebra", "p2", "negative"),
        (0, "q1", "zebra", "p3", "negative"),
        (1, "q2", "yak tiger", "p3", "positive"), (1, "q2", "yak tiger", "p4", "negative"),
        (1, "q2", "yak tiger", "p1", "negative"),
    ]
    return pd.DataFrame(
        [dict(group=g, qid=q, query=t, pid=p, passage=PASSAGES[p], grade=int(r == "positive") * 2, role=r)
         for g, q, t, p, r in rows]
    )


def test_lengths(pairs):
    assert query_length(pairs) == {"q1": 1.0, "q2": 2.0}
    # q1's candidates have 2, 3 and 2 words: 7/3; q2's have 2, 2, 2.
    assert candidate_length(pairs) == pytest.approx({"q1": 7 / 3, "q2": 2.0})


def test_bm25_difficulties_by_hand(pairs):
    """b = 0 removes length normalisation, so with k1 = 0.9 a term occurring once scores idf · 1/1.9.

    Each of zebra, lion, tiger, yak occurs in 2 of the 4 pooled passages: idf = ln(1 + 2.5/2.5) = ln 2, so one
    matching term is u = ln 2 / 1.9 = 0.364814.
    q1 "zebra": p1 = u, p2 = 0, p3 = 0 → σ = u·sqrt(1/3 − 1/9) = u·sqrt(2/9) = 0.171975; positive p1 = u.
    q2 "yak tiger": p3 = 2u, p4 = u, p1 = 0 → σ = u·sqrt(5/3 − 1) = u·sqrt(2/3) = 0.297870; positive p3 = 2u.
    """
    scores = bm25_candidate_scores(pairs, k1=0.9, b=0.0)
    u = 0.364814
    assert scores["q1"] == pytest.approx({"p1": u, "p2": 0.0, "p3": 0.0}, abs=1e-6)
    assert scores["q2"] == pytest.approx({"p3": 2 * u, "p4": u, "p1": 0.0}, abs=1e-6)
    assert bm25_std(scores) == pytest.approx({"q1": -0.171975, "q2": -0.297870}, abs=1e-6)
    assert bm25_positive(pairs, scores) == pytest.approx({"q1": -u, "q2": -2 * u}, abs=1e-6)


def test_semantic_std_by_hand(pairs):
    """Cosines with a fixed 2-d encoder. q1 = (1,0) vs p1 (1,0), p2 (0,1), p3 (1,1): 1, 0, 1/√2 → σ = 0.419760.
    q2 = (0,1) vs p3 (1,1), p4 (2,0), p1 (1,0): 1/√2, 0, 0 → σ = sqrt(0.5/3 − (0.707107/3)²) = 1/3."""
    vectors = {"zebra": (1, 0), "yak tiger": (0, 1), PASSAGES["p1"]: (1, 0), PASSAGES["p2"]: (0, 1),
               PASSAGES["p3"]: (1, 1), PASSAGES["p4"]: (2, 0)}
    got = semantic_std(pairs, lambda texts: np.array([vectors[t] for t in texts], dtype=float))
    assert got == pytest.approx({"q1": -0.419760, "q2": -1 / 3}, abs=1e-6)


def test_model_prediction_and_loss_by_hand(pairs):
    """Logits p1 2, p2 −1, p3 0, p4 1.
    Prediction: q1 positive p1 → −sigmoid(2) = −0.880797; q2 positive p3 → −sigmoid(0) = −0.5.
    Loss (BCE): q1 = (ln(1+e⁻²) + ln(1+e⁻¹) + ln 2)/3 = 0.377779; q2 = (ln 2 + ln(1+e) + ln(1+e²))/3 = 1.377779."""
    logits = {PASSAGES["p1"]: 2.0, PASSAGES["p2"]: -1.0, PASSAGES["p3"]: 0.0, PASSAGES["p4"]: 1.0}

    def predict(batch):
        return np.array([logits[p] for _, p in batch])

    assert model_prediction(pairs, predict) == pytest.approx({"q1": -0.880797, "q2": -0.5}, abs=1e-6)
    assert model_loss(pairs, predict) == pytest.approx({"q1": 0.377779, "q2": 1.377779}, abs=1e-6)


def test_random_difficulty_is_seeded_per_query(pairs):
    a = random_difficulty(pairs, seed=0)
    assert a == random_difficulty(pairs.iloc[::-1], seed=0)
    assert a != random_difficulty(pairs, seed=1) and all(0.0 <= v < 1.0 for v in a.values())


def test_score_difficulty_dispatches_and_model_functions_need_a_model(pairs):
    assert score_difficulty(pairs, DifficultyParams(name="query_length")) == {"q1": 1.0, "q2": 2.0}
    bm25 = score_difficulty(pairs, DifficultyParams(name="bm25_std", b=0.0))
    assert bm25 == pytest.approx({"q1": -0.171975, "q2": -0.297870}, abs=1e-6)
    with pytest.raises(ValueError, match="needs a trained cross-encoder"):
        score_difficulty(pairs, DifficultyParams(name="model_loss"))


def test_query_scores_spread_over_rows_and_invert(pairs):
    curriculum = QueryCurriculum({"q1": 1.0, "q2": 2.0}, pacing="linear", invert=True)
    assert curriculum.for_rows(instance_qids(pairs, "bce")).difficulties == [-1.0] * 3 + [-2.0] * 3
    assert instance_qids(pairs, "lambda") == ["q1", "q2"]
    for loss in ("bce", "lambda", "mnrl"):
        assert len(instance_qids(pairs, loss)) == len(to_loss_dataset(pairs, loss))
    with pytest.raises(ValueError, match="no difficulty for 1 keys"):
        QueryCurriculum({"q1": 1.0}, pacing="linear").for_rows(["q1", "q2"])


def test_compare_curricula_tests_against_standard_and_picks_the_best():
    qrels = {"a": {"d1": 2}, "b": {"d2": 2}}
    bm25 = {"a": {"d1": 1.0, "d9": 2.0}, "b": {"d2": 1.0, "d9": 2.0}}  # relevant at rank 2: nDCG@10 0.6309
    good = {"a": {"d1": 2.0, "d9": 1.0}, "b": {"d2": 2.0, "d9": 1.0}}  # rank 1 everywhere: 1.0
    half = {"a": {"d1": 2.0, "d9": 1.0}, "b": {"d2": 1.0, "d9": 2.0}}  # (1 + 1/log2(3)) / 2 = 0.815465
    evaluation = RankingEvalParams(metrics=("ndcg@10",), relevance_level=2)
    metrics, comparison, best = compare_curricula(
        qrels, ("bm25", bm25), {"standard_training": half, "linear": good}, evaluation)
    assert best == "linear" and comparison["baseline"] == "standard_training"
    assert metrics["standard_training_test_ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert metrics["linear_test_ndcg@10"] == metrics["test_ndcg@10"] == 1.0
    assert metrics["bm25_test_ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert "p_value_linear_test_ndcg@10" in metrics and "p_value_standard_training_test_ndcg@10" not in metrics
    # A tie keeps standard training.
    _, _, best = compare_curricula(qrels, ("bm25", bm25), {"standard_training": good, "linear": good}, evaluation)
    assert best == "standard_training"


def test_compare_curricula_tests_the_best_arm_against_the_starting_model():
    qrels = {"a": {"d1": 2}, "b": {"d2": 2}}
    bm25 = {"a": {"d1": 1.0, "d9": 2.0}, "b": {"d2": 1.0, "d9": 2.0}}
    good = {"a": {"d1": 2.0, "d9": 1.0}, "b": {"d2": 2.0, "d9": 1.0}}
    half = {"a": {"d1": 2.0, "d9": 1.0}, "b": {"d2": 1.0, "d9": 2.0}}
    evaluation = RankingEvalParams(metrics=("ndcg@10",), relevance_level=2)
    metrics, comparison, best = compare_curricula(
        qrels, ("bm25", bm25), {"standard_training": half, "linear": half}, evaluation, starting_point=good)
    assert best == "standard_training"                       # the starting model is listed, never chosen
    assert metrics["zero_shot_test_ndcg@10"] == 1.0
    assert metrics["test_ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert "p_value_test_ndcg@10_vs_zero_shot" in metrics
    assert metrics["significant_test_ndcg@10_vs_zero_shot"] == 0.0   # worse than the starting model
    assert "zero_shot" in comparison["per_query"]
    with pytest.raises(ValueError, match="'zero_shot' is the starting model's run"):
        compare_curricula(qrels, ("bm25", bm25), {"standard_training": half, "zero_shot": good}, evaluation)


def _params(steps=4):
    # Random batches, as the curriculum's standard_training arm draws them: the comparison below needs equal batches.
    return CrossEncoderParams(
        model=TinyBertModel(vocab_size=200), length_grouped_batches=False,
        training=TrainingParams(max_steps=steps, per_device_batch_size=4, learning_rate=1e-3, max_length=32,
                                logging_steps=1, device="cpu", precision="fp32", warmup_ratio=0.0),
    )


def _toy_pairs(n_queries=8):
    rows = []
    for q in range(n_queries):
        for j, role in enumerate(["positive", "negative", "negative"]):
            rows.append(dict(group=q, qid=f"q{q}", query=f"query {'word ' * q}{q}", pid=f"{q}-{j}",
                             passage=f"passage {q} {j} about {role}", grade=2 if role == "positive" else 0,
                             role=role))
    return pd.DataFrame(rows)


def test_standard_training_through_the_curriculum_trainer_trains_like_the_plain_trainer(tmp_path):
    """Same batches, so the same losses up to CPU kernel noise (two plain runs differ by ~3e-6 too)."""
    pairs = _toy_pairs()
    scores = {f"q{q}": float(q) for q in range(8)}
    plain = train_cross_encoder(pairs, _params(), tmp_path / "plain")
    standard = train_cross_encoder(pairs, _params(), tmp_path / "standard", QueryCurriculum(scores))
    curriculum = train_cross_encoder(pairs, _params(), tmp_path / "linear", QueryCurriculum(scores, "linear"))
    losses = {name: [e["loss"] for e in r.log_history]
              for name, r in (("plain", plain), ("standard", standard), ("linear", curriculum))}
    assert losses["standard"] == pytest.approx(losses["plain"], rel=1e-4)
    assert losses["linear"] != pytest.approx(losses["plain"], rel=1e-2)
    assert standard.data_fraction == [1.0] * 4


def test_curriculum_trainer_feeds_the_easiest_queries_first(tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer

    from finetune.curriculum import with_curriculum
    from finetune.device import resolve_placement
    from finetune.models.sources import resolve_model
    from finetune.ranking.cross_encoder import build_loss, to_training_arguments

    pairs = _toy_pairs()  # 24 rows; q0 … q7 have 0 … 7 extra words
    params = _params(steps=6)
    placement = resolve_placement("cpu", "fp32")
    resolved = resolve_model(params.model, tmp_path, texts=pairs["query"].tolist() + pairs["passage"].tolist())
    model = CrossEncoder(resolved.name_or_path, num_labels=1, max_length=32, device="cpu")
    scores = {f"q{q}": float(q) for q in range(8)}
    trainer = with_curriculum(CrossEncoderTrainer)(
        model=model, args=to_training_arguments(params.training, tmp_path / "t", placement),
        train_dataset=to_loss_dataset(pairs, "bce"), loss=build_loss(model, "bce", pairs),
        curriculum=QueryCurriculum(scores, pacing="linear").for_rows(instance_qids(pairs, "bce")),
    )
    batches = list(trainer.get_train_dataloader().batch_sampler)
    plain = CrossEncoderTrainer(
        model=model, args=to_training_arguments(params.training, tmp_path / "p", placement),
        train_dataset=to_loss_dataset(pairs, "bce"), loss=build_loss(model, "bce", pairs))
    standard = with_curriculum(CrossEncoderTrainer)(
        model=model, args=to_training_arguments(params.training, tmp_path / "s", placement),
        train_dataset=to_loss_dataset(pairs, "bce"), loss=build_loss(model, "bce", pairs),
        curriculum=QueryCurriculum(scores).for_rows(instance_qids(pairs, "bce")))
    reference = list(plain.get_train_dataloader().batch_sampler)
    assert list(standard.get_train_dataloader().batch_sampler) == reference != batches
    easiest = {i for i, q in enumerate(pairs["qid"]) if scores[q] < 2}  # ⌊0.33 × 24⌋ = 7 rows: q0, q1, 1 of q2
    first = set(batches[0])
    assert len(first) == 4 and len(first - easiest) <= 1 and first <= set(range(9))
    sampler = trainer.curriculum_sampler
    assert sampler.total_steps == 6 and sampler.available(0) == 7
    # With hardest first the first batch comes from q7, q6 and one of q5.
    inverted = with_curriculum(CrossEncoderTrainer)(
        model=model, args=to_training_arguments(params.training, tmp_path / "t2", placement),
        train_dataset=to_loss_dataset(pairs, "bce"), loss=build_loss(model, "bce", pairs),
        curriculum=QueryCurriculum(scores, pacing="linear", invert=True).for_rows(instance_qids(pairs, "bce")),
    )
    assert set(next(iter(inverted.get_train_dataloader().batch_sampler))) <= set(range(15, 24))


def test_curriculum_training_reports_its_pacing(tmp_path):
    pairs = _toy_pairs()
    scores = {f"q{q}": float(q) for q in range(8)}
    result = train_cross_encoder(pairs, _params(steps=10), tmp_path, QueryCurriculum(scores, pacing="step"))
    # 24 rows, T = 9: ⌊0.33·24⌋ = 7 while t ≤ 2.97, ⌊0.66·24⌋ = 15 while t ≤ 5.94, then 24.
    assert result.data_fraction == pytest.approx([7 / 24] * 3 + [15 / 24] * 3 + [1.0] * 4)
    assert len(result.log_history) == 10 and all(math.isfinite(e["loss"]) for e in result.log_history)
