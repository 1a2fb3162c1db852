"""Dual-encoder and distillation steps through ``.entrypoint()``, chained on generated data with tiny models."""

import pytest

from finetune.data.demo import write_demo_msmarco
from finetune.params import (
    CrossEncoderDistillationParams,
    DenseEvalParams,
    DualEncoderParams,
    MiningParams,
    RankingDataParams,
    RankingEvalParams,
    RegisteredModel,
    RetrievalParams,
    TeacherParams,
    TinyBertModel,
    TrainingParams,
)
from steps.data.fingerprint_sources import fingerprint_sources
from steps.data.load_msmarco import load_msmarco
from steps.data.mine_hard_negatives import mine_hard_negatives
from steps.data.retrieve_first_stage import retrieve_first_stage
from steps.data.score_teacher import score_teacher
from steps.evaluate.compare_teacher_student import compare_teacher_student
from steps.evaluate.evaluate_dual_encoder import evaluate_dual_encoder
from steps.train.distill_cross_encoder import distill_cross_encoder
from steps.train.load_teacher_model import load_teacher_model
from steps.train.train_dual_encoder import train_dual_encoder

FAST = TrainingParams(max_steps=3, per_device_batch_size=4, learning_rate=1e-3, max_length=48, logging_steps=1,
                      device="cpu", precision="fp32")
EVALUATION = RankingEvalParams(rerank_depth=8, metrics=("ndcg@10", "recall@8"), relevance_level=2)


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    files = write_demo_msmarco(tmp_path_factory.mktemp("data"), num_queries=12, passages_per_query=8, seed=1)
    data = RankingDataParams.model_validate({
        "train": {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}},
        "eval_fraction": 0.25,
    })
    train_set, eval_set = load_msmarco.entrypoint(data, fingerprint_sources.entrypoint(data))
    train_run, eval_run = retrieve_first_stage.entrypoint(train_set, eval_set, RetrievalParams(k=8))
    pairs = mine_hard_negatives.entrypoint(train_set, train_run, MiningParams(negatives_per_positive=2, depth=8,
                                                                              max_positives_per_query=1))
    return pairs, eval_set, eval_run


def test_dual_encoder_steps(mined):
    pairs, eval_set, eval_run = mined
    model_dir, log = train_dual_encoder.entrypoint(pairs, DualEncoderParams(model=TinyBertModel(vocab_size=200),
                                                                            training=FAST))
    assert model_dir.kind == "dual_encoder" and len(log) == 3
    metrics, comparison, stats = evaluate_dual_encoder.entrypoint(model_dir, eval_set, eval_run, EVALUATION,
                                                                  DenseEvalParams(k=8), 48)
    assert list(comparison["means"]) == [eval_run.name, "dense", "rerank"]
    assert stats["passages_encoded"] == len(eval_set.corpus)
    assert metrics["bm25_test_recall@8"] == pytest.approx(comparison["means"]["bm25"]["recall@8"])


def test_teacher_scoring_and_cross_encoder_student_steps(mined):
    pairs, eval_set, eval_run = mined
    teacher = TeacherParams(model=TinyBertModel(vocab_size=200, num_layers=2), architecture="cross_encoder",
                            max_length=48, device="cpu")
    teacher_dir = load_teacher_model.entrypoint(teacher, pairs)
    assert teacher_dir.kind == "cross_encoder" and teacher_dir.num_parameters > 0
    scores = score_teacher.entrypoint(pairs, teacher_dir, teacher)
    assert len(scores) == len(pairs) and scores["teacher_score"].notna().all()
    student_dir, _ = distill_cross_encoder.entrypoint(scores, teacher_dir, CrossEncoderDistillationParams(
        training=FAST))
    assert student_dir.base_model.endswith("layers [0]") and student_dir.num_parameters < teacher_dir.num_parameters
    metrics, _, stats = compare_teacher_student.entrypoint(teacher_dir, student_dir, eval_set, eval_run,
                                                           EVALUATION, 48)
    assert stats["teacher_num_parameters"] == teacher_dir.num_parameters and stats["speedup"] > 0
    assert {"test_ndcg@10", "teacher_test_ndcg@10", "student_teacher_ratio_test_ndcg@10"} <= set(metrics)


def test_a_registered_teacher_is_not_materialised_by_the_step(mined):
    with pytest.raises(ValueError, match="loaded by the pipeline"):
        load_teacher_model.entrypoint(TeacherParams(model=RegisteredModel(name="x")), mined[0])
