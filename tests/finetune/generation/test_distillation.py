"""Causal-LM distillation: the KD loss against hand-derived values, the vocabulary check, and a student that learns."""

import math

import pytest
import torch

from finetune.data.text import load_text_data
from finetune.generation.distillation import check_vocabularies, compare_models, distill_causal_lm, kd_loss
from finetune.models.causal import build_tiny_causal_lm
from finetune.params import DemoText, LmDistillationParams, TextDataParams, TinyGpt2Model

TRAINING = {"per_device_batch_size": 8, "learning_rate": 1e-2, "warmup_ratio": 0.0, "logging_steps": 1,
            "eval_steps": 4, "max_steps": 8, "device": "cpu", "precision": "fp32"}


def _one_position(student, teacher, label=0):
    # Length 2: position 0 predicts labels[1]; position 1 has nothing to predict and is dropped by the shift.
    s = torch.tensor([[student, [0.0, 0.0]]])
    t = torch.tensor([[teacher, [0.0, 0.0]]])
    return s, t, torch.tensor([[5, label]])


def test_kd_loss_matches_hand_derived_values_with_the_temperature_squared():
    """Student logits [2, 0], teacher logits [0, 0], label 0, τ = 2, α = 0.5.

    Teacher at τ: p = [1/2, 1/2]. Student at τ: logits [1, 0], q = [e/(1+e), 1/(1+e)] = [0.7311, 0.2689].
    KL(p‖q) = Σ p·(ln p − ln q) = ln(1/2) − ½·(ln q₀ + ln q₁) = −ln 2 − ½·(1 − 2·ln(1+e)) = ln(1+e) − ln 2 − ½
            = 1.31326 − 0.69315 − 0.5 = 0.12011.
    CE at τ = 1: −ln(e²/(e²+1)) = ln(1 + e⁻²) = 0.12693.
    Loss = α·τ²·KL + (1−α)·CE = 0.5·4·0.12011 + 0.5·0.12693 = 0.24023 + 0.06346 = 0.30369.
    """
    kl_expected = math.log(1 + math.e) - math.log(2) - 0.5
    ce_expected = math.log(1 + math.exp(-2))
    loss, kl, ce = kd_loss(*_one_position([2.0, 0.0], [0.0, 0.0]), alpha=0.5, temperature=2.0)
    assert kl.item() == pytest.approx(kl_expected, abs=1e-6) == pytest.approx(0.12011, abs=1e-5)
    assert ce.item() == pytest.approx(ce_expected, abs=1e-6)
    assert loss.item() == pytest.approx(0.5 * 4 * kl_expected + 0.5 * ce_expected, abs=1e-6)
    assert loss.item() == pytest.approx(0.30369, abs=1e-5)
    # α = 0 is plain cross-entropy; α = 1 is τ²·KL alone; τ = 1 drops the factor.
    assert kd_loss(*_one_position([2.0, 0.0], [0.0, 0.0]), alpha=0.0, temperature=2.0)[0].item() == pytest.approx(
        ce_expected, abs=1e-6)
    assert kd_loss(*_one_position([2.0, 0.0], [0.0, 0.0]), alpha=1.0, temperature=2.0)[0].item() == pytest.approx(
        4 * kl_expected, abs=1e-6)


def test_kd_loss_ignores_masked_labels_and_top_k_renormalises_the_teacher():
    """Top-1 of teacher [3, 0, 0]: p = [1] on token 0, so KL = −ln q₀; with the student uniform over 3 tokens at any
    τ, q₀ = 1/3 and KL = ln 3 = 1.09861. A label of -100 at the only position leaves nothing scored (CE is NaN)."""
    s = torch.zeros(1, 2, 3)
    t = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    _, kl, _ = kd_loss(s, t, torch.tensor([[1, 2]]), alpha=1.0, temperature=1.5, top_k=1)
    assert kl.item() == pytest.approx(math.log(3), abs=1e-6)
    two = torch.cat([s, s]), torch.cat([t, t])
    loss, _, ce = kd_loss(*two, torch.tensor([[1, 2], [1, -100]]), alpha=0.0, temperature=1.0)
    assert ce.item() == pytest.approx(math.log(3), abs=1e-6)  # one scored position: uniform over 3 tokens


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data = TextDataParams(source=DemoText(output_dir=tmp_path_factory.mktemp("text"), num_documents=40),
                          validation_fraction=0.1, test_fraction=0.1)
    return load_text_data(data)


def test_vocabulary_mismatch_stops_before_training(corpus, tmp_path):
    texts = corpus[0]["text"].tolist()
    teacher = build_tiny_causal_lm(TinyGpt2Model(hidden_size=32, vocab_size=400), tmp_path / "t", texts)
    same = build_tiny_causal_lm(TinyGpt2Model(hidden_size=16, vocab_size=400, seed=1), tmp_path / "s", texts)
    check_vocabularies(teacher, same)  # same texts and vocab_size: the same BPE tokenizer
    bigger = build_tiny_causal_lm(TinyGpt2Model(hidden_size=16, vocab_size=450), tmp_path / "b", texts)
    with pytest.raises(ValueError, match="different vocabulary sizes") as error:
        check_vocabularies(teacher, bigger)
    assert "\n" not in str(error.value) and str(tmp_path / "b") in str(error.value)
    # Same size, merges learned on other text (the corpus reversed): the ids mean different tokens.
    other_text = build_tiny_causal_lm(TinyGpt2Model(hidden_size=16, vocab_size=400), tmp_path / "o",
                                      [t[::-1] for t in texts])
    with pytest.raises(ValueError, match="different token → id maps"):
        check_vocabularies(teacher, other_text)
    # Through the training entry point: the error comes before any training output exists.
    params = LmDistillationParams(teacher={"kind": "local", "path": str(teacher)},
                                  student={"kind": "local", "path": str(bigger)}, training=TRAINING, block_size=32)
    with pytest.raises(ValueError, match="different vocabulary sizes"):
        distill_causal_lm(corpus[0], corpus[1], teacher, params, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "model").exists()


def test_distilled_student_learns_from_the_teacher(corpus, tmp_path):
    train, validation, test = corpus
    texts = train["text"].tolist()
    teacher = build_tiny_causal_lm(TinyGpt2Model(hidden_size=32, vocab_size=400, seed=3), tmp_path / "t", texts)
    params = LmDistillationParams(teacher={"kind": "local", "path": str(teacher)},
                                  student={"kind": "tiny_gpt2", "hidden_size": 16, "vocab_size": 400},
                                  training=TRAINING, alpha=0.7, temperature=2.0, block_size=32)
    result = distill_causal_lm(train, validation, teacher, params, tmp_path / "kd")
    kd = [e for e in result.log_history if "kd_kl" in e]
    assert kd and all(e["kd_kl"] > 0 for e in kd)
    losses = [e["loss"] for e in result.log_history if "loss" in e]
    assert losses[-1] < losses[0]
    assert result.stats["alpha"] == 0.7 and result.stats["steps"] == 8 and result.stats["tokens_per_second"] > 0
    # The evaluation loss is plain cross-entropy: exp(validation loss) is the validation perplexity.
    assert result.stats["validation_perplexity"] == pytest.approx(math.exp(result.stats["validation_loss"]), rel=1e-3)
    rows = compare_models({"teacher": teacher, "student": result.model_dir}, test["text"].tolist(), 32, 8, "cpu")
    assert [r["model"] for r in rows] == ["teacher", "student"]
    assert rows[0]["parameters"] > rows[1]["parameters"] > 0
    assert all(r["test_perplexity"] == pytest.approx(math.exp(r["test_nll"])) for r in rows)


def test_alpha_zero_never_runs_the_teacher(corpus, tmp_path, monkeypatch):
    import transformers

    train, validation, _ = corpus
    texts = train["text"].tolist()
    teacher = build_tiny_causal_lm(TinyGpt2Model(hidden_size=32, vocab_size=400), tmp_path / "t", texts)
    load = transformers.AutoModelForCausalLM.from_pretrained

    def load_with_a_teacher_that_must_not_run(path, *args, **kwargs):
        model = load(path, *args, **kwargs)
        if str(path) == str(teacher):
            model.forward = lambda *a, **k: pytest.fail("the teacher ran with alpha = 0")
        return model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", load_with_a_teacher_that_must_not_run)
    params = LmDistillationParams(teacher={"kind": "local", "path": str(teacher)},
                                  student={"kind": "tiny_gpt2", "hidden_size": 16, "vocab_size": 400},
                                  training={**TRAINING, "max_steps": 2}, alpha=0.0, block_size=32)
    result = distill_causal_lm(train, validation, teacher, params, tmp_path / "ce")
    assert result.stats["steps"] == 2 and result.stats["alpha"] == 0.0
    assert not [e for e in result.log_history if "kd_kl" in e]


def test_cached_top_k_teacher_logits_train_like_the_teacher_run_on_the_fly(corpus, tmp_path):
    """Cached top-k logits are the teacher's top-k at the same positions, so the run's losses match the run that
    computes top-k from the teacher on every batch (same seed, same batches), with no teacher kept in memory."""
    train, validation, _ = corpus
    teacher = build_tiny_causal_lm(TinyGpt2Model(hidden_size=32, vocab_size=400, seed=3), tmp_path / "t",
                                   train["text"].tolist())
    losses = {}
    for cached in (False, True):
        params = LmDistillationParams(teacher={"kind": "local", "path": str(teacher)},
                                      student={"kind": "tiny_gpt2", "hidden_size": 16, "vocab_size": 400},
                                      training={**TRAINING, "max_steps": 4}, alpha=0.8, top_k=5,
                                      cache_top_k=cached, block_size=32)
        result = distill_causal_lm(train, validation, teacher, params, tmp_path / f"run_{cached}")
        losses[cached] = [e["loss"] for e in result.log_history if "loss" in e]
    assert len(losses[True]) == 4
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    with pytest.raises(ValueError, match="cache_top_k needs top_k"):
        LmDistillationParams(teacher={"kind": "tiny_gpt2"}, student={"kind": "tiny_gpt2"}, cache_top_k=True)


def test_student_from_the_teacher_keeps_every_other_layer_unless_told(corpus, tmp_path):
    from finetune.models.layer_dropping import num_layers
    from finetune.params import TinyLlamaModel

    train, validation, test = corpus
    teacher = build_tiny_causal_lm(TinyLlamaModel(num_layers=4, hidden_size=32, vocab_size=400), tmp_path / "t",
                                   train["text"].tolist())
    params = LmDistillationParams(teacher={"kind": "local", "path": str(teacher)}, student="teacher",
                                  training={**TRAINING, "max_steps": 2}, block_size=32)
    assert params.layers_to_keep(4) == (0, 2) and params.layers_to_keep(5) == (0, 2, 4)
    result = distill_causal_lm(train, validation, teacher, params, tmp_path / "kd")
    assert num_layers(result.model_dir) == 2 and result.stats["steps"] == 2
    rows = compare_models({"teacher": teacher, "student": result.model_dir}, test["text"].tolist(), 32, 8, "cpu",
                          paired_against="teacher")
    assert rows[0]["parameters"] > rows[1]["parameters"]
    student = rows[1]
    assert student["Δ log-ppl vs teacher"] == pytest.approx(
        student["test_nll"] - rows[0]["test_nll"], abs=0.5)  # window means vs token means: close, not equal
    assert student["Δ low"] < student["Δ log-ppl vs teacher"] < student["Δ high"]
    assert 0.0 <= student["vs teacher p"] <= 1.0 and "/" in student["windows better"]
    # An explicit list wins; a spec keeps all its layers unless told.
    assert params.model_copy(update={"keep_layers": (1, 3)}).layers_to_keep(4) == (1, 3)
    spec = LmDistillationParams(teacher={"kind": "local", "path": str(teacher)},
                                student={"kind": "local", "path": str(teacher)})
    assert spec.layers_to_keep(4) is None


def test_keep_layers_errors_name_the_key():
    teacher = {"kind": "local", "path": "/nowhere"}
    with pytest.raises(ValueError, match="keep_layers: \\[2, 1\\] must be strictly increasing"):
        LmDistillationParams(teacher=teacher, student="teacher", keep_layers=(2, 1))
    params = LmDistillationParams(teacher=teacher, student="teacher", keep_layers=(0, 7))
    with pytest.raises(ValueError, match="keep_layers: \\[0, 7\\] goes beyond the 4 layers"):
        params.layers_to_keep(4)
    with pytest.raises(ValueError, match="student: 'teacher' starts from the teacher's weights"):
        params.student_params()


def test_paired_windows_golden_values():
    """Candidate perplexities e^1, e^2, e^3 against e^2, e^2, e^5: log differences −1, 0, −2, mean −1, sample sd 1,
    t = −1 / (1/√3) = −√3 with 2 degrees of freedom: two-sided p = 0.2254, half-width t₀.₉₇₅,₂ · 1/√3 = 2.4842."""
    from finetune.generation.distillation import paired_windows

    candidate = {"a": math.e, "b": math.e ** 2, "c": math.e ** 3}
    baseline = {"a": math.e ** 2, "b": math.e ** 2, "c": math.e ** 5, "unshared": 1.0}
    out = paired_windows(candidate, baseline, "no_kd")
    assert out["Δ log-ppl vs no_kd"] == pytest.approx(-1.0)
    assert out["vs no_kd p"] == pytest.approx(0.2254, abs=1e-4)
    assert out["Δ low"] == pytest.approx(-1.0 - 2.4842, abs=1e-4) and out["Δ high"] == pytest.approx(1.4842, abs=1e-4)
    assert out["windows better"] == "2/3"
    with pytest.raises(ValueError, match="1 common windows"):
        paired_windows({"a": 1.0}, {"a": 2.0}, "no_kd")
