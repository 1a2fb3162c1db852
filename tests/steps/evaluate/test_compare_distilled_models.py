"""compare_distilled_models through ``.entrypoint()``: teacher, student and no-teacher student on the same blocks.

The teacher is a tiny GPT-2 whose LM head is zeroed: every token has probability 1/V, so its perplexity is V
and its NLL ln V exactly. Student and no-teacher student are the same saved model, so their numbers are equal.
"""

import math

import pandas as pd
import pytest
import torch

import steps.evaluate.compare_distilled_models as module
from finetune.models.causal import build_tiny_causal_lm, load_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams, TinyGpt2Model
from steps.evaluate.compare_distilled_models import compare_distilled_models

TEXTS = [f"what is {a} plus {b}? it is {a + b}." for a in range(7) for b in range(5)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    student = build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=64), root / "student", TEXTS)
    model, tokenizer = load_causal_lm(student)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.save_pretrained(root / "uniform")
    tokenizer.save_pretrained(root / "uniform")
    return (ModelDirectory(root / "uniform", "causal_lm"), ModelDirectory(student, "causal_lm"),
            model.config.vocab_size, sum(p.numel() for p in model.parameters()))


def test_each_role_is_measured_on_the_same_blocks(models, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    teacher, student, vocab, parameters = models
    documents = pd.DataFrame({"text": TEXTS[:6]})
    evaluation = GenerationEvalParams(batch_size=4, device="cpu")
    rows, metrics = compare_distilled_models.entrypoint(teacher, student, student, documents, evaluation,
                                                        block_size=16)
    assert [row["model"] for row in rows] == ["teacher", "student", "no_kd"]
    assert metrics["teacher_test_perplexity"] == pytest.approx(vocab, rel=1e-5)
    assert metrics["teacher_test_nll"] == pytest.approx(math.log(vocab), rel=1e-5)
    assert metrics["test_perplexity"] == metrics["no_kd_test_perplexity"] != metrics["teacher_test_perplexity"]
    assert metrics["test_nll"] == pytest.approx(math.log(metrics["test_perplexity"]))
    assert metrics["teacher_parameters"] == metrics["student_parameters"] == float(parameters)
    assert all(metrics[f"{role}_tokens_per_second"] > 0 for role in ("teacher", "student", "no_kd"))
    assert "student_test_perplexity" not in metrics  # the student's numbers go by the plain names
    assert recorded == [metrics]
