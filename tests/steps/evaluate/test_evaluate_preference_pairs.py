"""evaluate_preference_pairs through ``.entrypoint()``: implicit rewards β·(log π − log π_ref) on held-out pairs.

With the policy equal to the reference every reward is exactly 0, so no pair is preferred (a tie counts as
wrong): accuracy 0 and margin 0. A different policy gives per-pair correctness whose mean is the accuracy.
"""

import pandas as pd
import pytest
import torch

import steps.evaluate.evaluate_preference_pairs as module
from finetune.models.causal import build_tiny_causal_lm, load_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams, TinyGpt2Model
from finetune.promotion import item_key
from steps.evaluate.evaluate_preference_pairs import evaluate_preference_pairs

PAIRS = pd.DataFrame({"prompt": ["say up:", "say down:", "say left:"], "chosen": [" up", " down", " left"],
                      "rejected": [" down", " up up up", " right"]})
EVALUATION = GenerationEvalParams(batch_size=2, device="cpu")


@pytest.fixture(scope="module")
def reference_and_policy(tmp_path_factory):
    root = tmp_path_factory.mktemp("pref")
    texts = (PAIRS["prompt"] + PAIRS["chosen"]).tolist() + (PAIRS["prompt"] + PAIRS["rejected"]).tolist()
    reference = build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=32), root / "reference", texts)
    model, tokenizer = load_causal_lm(reference)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # uniform: log π = −(completion tokens)·ln V
    model.save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    return ModelDirectory(reference, "causal_lm"), ModelDirectory(root / "policy", "causal_lm")


def test_the_reference_against_itself_prefers_nothing(reference_and_policy, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    reference, _ = reference_and_policy
    metrics, per_pair = evaluate_preference_pairs.entrypoint(reference, reference, PAIRS, EVALUATION, 0.1)
    rewards = {"test_preference_accuracy": 0.0, "test_reward_margin": 0.0, "test_reward_chosen": 0.0,
               "test_reward_rejected": 0.0, "test_pairs": 3.0}
    assert {key: metrics[key] for key in rewards} == rewards
    assert per_pair == {item_key(*row): 0.0 for row in PAIRS.itertuples(index=False)}
    assert recorded and all(recorded[0][key] == value for key, value in rewards.items())


def test_per_pair_correctness_averages_to_the_accuracy_and_beta_scales_the_rewards(reference_and_policy):
    reference, policy = reference_and_policy
    metrics, per_pair = evaluate_preference_pairs.entrypoint(policy, reference, PAIRS, EVALUATION, 0.1)
    doubled, same_pairs = evaluate_preference_pairs.entrypoint(policy, reference, PAIRS, EVALUATION, 0.2)
    assert set(per_pair.values()) <= {0.0, 1.0} and metrics["test_reward_margin"] != 0.0
    assert metrics["test_preference_accuracy"] == pytest.approx(sum(per_pair.values()) / 3)
    assert metrics["test_reward_margin"] == pytest.approx(metrics["test_reward_chosen"]
                                                          - metrics["test_reward_rejected"])
    assert doubled["test_reward_margin"] == pytest.approx(2 * metrics["test_reward_margin"])
    assert same_pairs == per_pair  # β > 0 scales rewards, never flips a preference
