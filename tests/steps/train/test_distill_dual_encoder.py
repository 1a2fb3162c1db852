"""distill_dual_encoder through ``.entrypoint()``: a bi-encoder student learns a teacher's scores, by default
starting from the teacher's own encoder with every other layer kept."""

import pytest

import steps.train.distill_dual_encoder as module
from finetune.models.directory import ModelDirectory
from finetune.params import DualEncoderDistillationParams, MiningParams, TinyBertModel, TrainingParams
from finetune.ranking.cross_encoder import mine_hard_negatives
from finetune.ranking.distillation import save_encoder
from steps.train.distill_dual_encoder import distill_dual_encoder

ORDER = ["20", "21", "10", "12", "14", "16", "11", "13", "15", "17", "18", "19"]
TRAINING = TrainingParams(max_steps=2, per_device_batch_size=4, learning_rate=1e-3, warmup_ratio=0.0,
                          logging_steps=1, max_length=32, device="cpu", precision="fp32")


@pytest.fixture
def scored(toy_ranking, tmp_path):
    """Mined toy groups with made-up teacher scores (positives 5, negatives 0), and a 4-layer teacher."""
    run = {q: {pid: float(len(ORDER) - i) for i, pid in enumerate(ORDER)} for q in toy_ranking.queries}
    pairs = mine_hard_negatives(toy_ranking, run, MiningParams(negatives_per_positive=2, positive_min_grade=2))
    pairs = pairs.assign(teacher_score=(pairs["role"] == "positive").astype(float) * 5.0)
    texts = list(toy_ranking.queries.values()) + list(toy_ranking.corpus.values())
    path, description, parameters = save_encoder(TinyBertModel(vocab_size=100, hidden_size=16, num_layers=4),
                                                 "dual_encoder", tmp_path / "teacher", texts)
    return pairs, ModelDirectory(path, "dual_encoder", description, parameters)


def test_the_student_starts_from_every_other_teacher_layer(scored, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    pairs, teacher = scored
    params = DualEncoderDistillationParams(student={"model": {"kind": "tiny_bert"}, "loss": "margin_mse",
                                                    "training": TRAINING})
    model_dir, log = distill_dual_encoder.entrypoint(pairs, teacher, params)
    facts = recorded[0]
    assert facts["kept_layers"] == [0, 2] and facts["teacher_num_parameters"] == teacher.num_parameters
    assert model_dir.kind == "dual_encoder" and model_dir.num_parameters == facts["num_parameters"]
    assert model_dir.num_parameters < teacher.num_parameters  # two of four layers
    assert teacher.base_model in model_dir.base_model and model_dir.base_model == facts["base_model"]
    assert facts["train_examples"] == pairs["group"].nunique() == 4  # one row per group: query, positive, negatives
    assert facts["final_loss"] == log[-1]["loss"] and len([e for e in log if "loss" in e]) == 2


def test_a_student_of_its_own_ignores_the_teachers_weights(scored, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    pairs, teacher = scored
    params = DualEncoderDistillationParams(from_teacher=False, student={
        "model": {"kind": "tiny_bert", "vocab_size": 100, "hidden_size": 16, "num_layers": 1}, "loss": "kl",
        "training": TRAINING.model_copy(update={"max_steps": 1})})
    model_dir, _ = distill_dual_encoder.entrypoint(pairs, teacher, params)
    assert recorded[0]["kept_layers"] is None and "teacher" not in model_dir.base_model
    assert "tiny_bert" in model_dir.base_model
