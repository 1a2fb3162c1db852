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


def test_embedding_mse_student_learns_the_teachers_embeddings(scored, monkeypatch):
    """One row per distinct query and passage; the student's embeddings move towards the teacher's."""
    import numpy as np

    from finetune.ranking.dual_encoder import load_dual_encoder

    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    pairs, teacher = scored
    training = TRAINING.model_copy(update={"max_steps": 30, "per_device_batch_size": 64, "learning_rate": 1e-3})
    # the toy teacher does not normalise its embeddings, so neither may the student (cosine would)
    params = DualEncoderDistillationParams(student={"loss": "embedding_mse", "similarity": "dot",
                                                    "training": training})
    model_dir, log = distill_dual_encoder.entrypoint(pairs, teacher, params)
    texts = pairs["query"].drop_duplicates().tolist() + pairs["passage"].drop_duplicates().tolist()
    assert recorded[0]["train_examples"] == len(texts) and recorded[0]["kept_layers"] == [0, 2]
    losses = [e["loss"] for e in log if "loss" in e]
    assert len(losses) == 30 and sum(losses[-5:]) < sum(losses[:5])  # all texts in every batch; dropout adds noise
    target = load_dual_encoder(teacher.path, "cpu").encode(texts)
    student = load_dual_encoder(model_dir.path, "cpu").encode(texts)
    assert np.mean((student - target) ** 2) < losses[0]  # closer to the teacher than the first batch was


def test_embedding_mse_cosine_student_refuses_a_teacher_that_does_not_normalise(scored):
    pairs, teacher = scored
    params = DualEncoderDistillationParams(student={"loss": "embedding_mse", "training": TRAINING})
    with pytest.raises(ValueError, match="use similarity: dot"):
        distill_dual_encoder.entrypoint(pairs, teacher, params)


def test_embedding_mse_refuses_a_cross_encoder_teacher(scored):
    pairs, teacher = scored
    cross = ModelDirectory(teacher.path, "cross_encoder", teacher.base_model, teacher.num_parameters)
    params = DualEncoderDistillationParams(student={"loss": "embedding_mse", "training": TRAINING})
    with pytest.raises(ValueError, match="this teacher is a cross_encoder"):
        distill_dual_encoder.entrypoint(pairs, cross, params)


def test_embedding_mse_needs_one_shared_tower():
    with pytest.raises(ValueError, match="towers: shared"):
        DualEncoderDistillationParams(student={"loss": "embedding_mse", "towers": "separate"})
