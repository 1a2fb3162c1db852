"""distill_causal_lm_model through ``.entrypoint()``: a smaller student learns from a teacher sharing its
tokenizer; a student with another vocabulary is refused before anything trains."""

import pandas as pd
import pytest

import steps.train.distill_causal_lm_model as module
from finetune.models.causal import build_tiny_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import LmDistillationParams, TinyGpt2Model
from steps.data.tokenize_text import tokenize_text
from steps.train.distill_causal_lm_model import distill_causal_lm_model

TEXTS = [f"the number {a} comes before {a + 1} and after {a - 1}." for a in range(1, 40)]
TRAIN, VALIDATION = pd.DataFrame({"text": TEXTS[:30]}), pd.DataFrame({"text": TEXTS[30:]})
TRAINING = {"max_steps": 2, "per_device_batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0,
            "logging_steps": 1, "eval_steps": 2, "device": "cpu", "precision": "fp32"}


def _params(**changes) -> LmDistillationParams:
    return LmDistillationParams.model_validate({"teacher": {"kind": "tiny_gpt2"}, "student": {"kind": "tiny_gpt2"},
                                                "method": {"name": "full"}, "training": TRAINING, "block_size": 16,
                                                **changes})


@pytest.fixture
def teacher(tmp_path) -> ModelDirectory:
    path = build_tiny_causal_lm(TinyGpt2Model(num_layers=2, max_position_embeddings=64), tmp_path / "teacher", TEXTS)
    return ModelDirectory(path, "causal_lm", "tiny teacher", 2)


def test_the_student_learns_from_the_teacher_and_keeps_its_own_description(teacher, tmp_path, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    path = build_tiny_causal_lm(TinyGpt2Model(num_layers=1, max_position_embeddings=64), tmp_path / "student", TEXTS)
    student = ModelDirectory(path, "causal_lm", "tiny student", 1)
    tokenized = tokenize_text.entrypoint(student, TRAIN, VALIDATION, _params().tokenization())
    model_dir, log, stats = distill_causal_lm_model.entrypoint(teacher, student, *tokenized, _params())
    assert stats["method"] == "full" and stats["steps"] == 2
    assert model_dir.base_model == "tiny student" and model_dir.num_parameters == stats["total_parameters"]
    assert recorded[0]["teacher"] == "tiny teacher" and recorded[0]["student"] == "tiny student"
    assert any("kd_kl" in e for e in log)  # the teacher's term was part of the loss


def test_a_student_with_another_vocabulary_is_refused_before_training(teacher, tmp_path):
    other = build_tiny_causal_lm(TinyGpt2Model(vocab_size=300, max_position_embeddings=64), tmp_path / "other",
                                 ["entirely different words here"] * 5)
    tokenized = tokenize_text.entrypoint(teacher, TRAIN, VALIDATION, _params().tokenization())
    with pytest.raises(ValueError, match="have different vocabulary sizes .* distillation needs one shared tokenizer"):
        distill_causal_lm_model.entrypoint(teacher, ModelDirectory(other, "causal_lm"), *tokenized, _params())
