"""DPO: preference metrics on a constructed case, the config mapping, and training that raises held-out accuracy."""

import pytest

from finetune.data.preferences import load_preference_data
from finetune.device import resolve_placement
from finetune.generation.preference import (
    agreement_curves,
    evaluate_preferences,
    preference_metrics,
    to_dpo_config,
    train_dpo,
)
from finetune.params import DemoPreferences, DpoParams, PreferenceDataParams

TRAINING = {"per_device_batch_size": 8, "learning_rate": 5e-3, "warmup_ratio": 0.0, "max_length": 48,
            "logging_steps": 2, "eval_steps": 10, "device": "cpu", "precision": "fp32"}
TINY = {"kind": "tiny_gpt2", "hidden_size": 32, "num_layers": 2, "vocab_size": 400, "max_position_embeddings": 64}


def test_preference_metrics_on_a_constructed_case():
    """β = 0.5, three pairs (policy − reference log-probs):
    pair 1: chosen −2 − (−4) = +2 → r = 1.0; rejected −3 − (−3) = 0 → r = 0;     margin +1.0 (correct)
    pair 2: chosen −5 − (−5) = 0  → r = 0;   rejected −4 − (−6) = +2 → r = 1.0; margin −1.0 (wrong)
    pair 3: chosen −1 − (−2) = +1 → r = 0.5; rejected −7 − (−6) = −1 → r = −0.5; margin +1.0 (correct)
    accuracy 2/3; mean margin (1 − 1 + 1)/3 = 1/3; mean chosen reward 1.5/3 = 0.5; mean rejected 0.5/3.
    """
    metrics = preference_metrics([-2, -5, -1], [-3, -4, -7], [-4, -5, -2], [-3, -6, -6], beta=0.5)
    assert metrics == pytest.approx({"test_preference_accuracy": 2 / 3, "test_reward_margin": 1 / 3,
                                     "test_reward_chosen": 0.5, "test_reward_rejected": 0.5 / 3, "test_pairs": 3.0})
    # A tie is not a win (TRL's rewards/accuracies counts chosen > rejected).
    assert preference_metrics([-1], [-1], [-1], [-1], beta=0.1, split="x")["x_preference_accuracy"] == 0.0


def test_dpo_config_maps_beta_loss_and_reference_mode(tmp_path):
    params = DpoParams(model=TINY, method={"name": "full"}, reference="precomputed", beta=0.3, loss_type="ipo",
                       training=TRAINING)
    config = to_dpo_config(params, tmp_path, resolve_placement("cpu", "fp32"), has_eval=True)
    assert (config.beta, config.loss_type, config.precompute_ref_log_probs) == (0.3, ["ipo"], True)
    assert (config.max_length, config.eval_strategy, config.bf16) == (48, "steps", False)


def test_dpo_params_refuse_impossible_reference_modes():
    with pytest.raises(ValueError, match="adapter_disabled needs a LoRA method"):
        DpoParams(model=TINY, method={"name": "full"}, reference="adapter_disabled")
    with pytest.raises(ValueError, match="reference_model is only used with reference: model"):
        DpoParams(model=TINY, reference="precomputed", reference_model=TINY)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    data = PreferenceDataParams(source=DemoPreferences(output_dir=tmp_path_factory.mktemp("p"), num_pairs=240))
    return load_preference_data(data)[:2]


@pytest.mark.parametrize(("method", "reference"), [("full", "model"), ("lora", "adapter_disabled"),
                                                   ("full", "precomputed")])
def test_dpo_raises_held_out_preference_accuracy(pairs, tmp_path, method, reference):
    train, test = pairs
    params = DpoParams(model=TINY, method={"name": method, **({"r": 8, "lora_alpha": 16} if method == "lora" else {})},
                       reference=reference, beta=0.1, training={**TRAINING, "max_steps": 30})
    result = train_dpo(train, test, params, tmp_path)
    assert result.stats["steps"] == 30
    base = tmp_path / "base" / "tiny_gpt2"
    before = evaluate_preferences(base, base, test, 0.1).metrics
    assert before["test_preference_accuracy"] == 0.0  # policy = reference: every reward is 0, every pair a tie
    evaluation = evaluate_preferences(result.model_dir, base, test, 0.1)
    after, correct = evaluation.metrics, evaluation.correct["preference"]
    assert after["test_preference_accuracy"] > 0.6 and after["test_reward_margin"] > 0
    assert after["test_preference_accuracy"] == pytest.approx(sum(correct) / len(correct))
    # The baselines do not depend on the policy: the same before and after training.
    assert after["test_reference_logprob_accuracy"] == before["test_reference_logprob_accuracy"]
    assert after["test_longer_answer_accuracy"] == before["test_longer_answer_accuracy"]
    assert after["test_balanced_preference_accuracy"] == pytest.approx(
        sum(evaluation.balanced_correct()) / len(evaluation.balanced))
    curves = agreement_curves(result.log_history)
    assert curves["train"] and curves["held-out"]
    if method == "lora":
        assert result.stats["trainable_parameters"] < result.stats["total_parameters"] / 5


def test_max_eval_pairs_zero_keeps_the_trainer_from_evaluating(pairs, tmp_path):
    """The held-out pairs stay for the evaluation step; the trainer scores none of them (no eval_* in its log)."""
    train, test = pairs
    params = DpoParams(model=TINY, method={"name": "full"}, beta=0.1, max_eval_pairs=0,
                       training={**TRAINING, "max_steps": 2, "eval_steps": 1})
    result = train_dpo(train, test, params, tmp_path)
    assert result.stats["steps"] == 2
    assert not any(key.startswith("eval_") for entry in result.log_history for key in entry)
