"""evaluate_preference_pairs through ``.entrypoint()``: the baselines it records next to the policy's accuracy.

A causal LM whose output layer is zero predicts the uniform distribution, so log π(y|x) = −(completion tokens)·ln V
exactly: the reference's own preference is then "prefer the shorter answer", and a policy equal to the reference
ties on every pair (a tie is wrong).
"""

import pandas as pd
import pytest
import torch

from finetune.models.causal import build_tiny_causal_lm, load_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams, TinyGpt2Model
from steps.evaluate.evaluate_preference_pairs import evaluate_preference_pairs

PAIRS = pd.DataFrame({"prompt": ["say up:", "say down:", "say left:", "say stop:"],
                      "chosen": [" up up", " down", " left", " stop stop stop"],
                      "rejected": [" down", " up up up", " right", " go"]})
EVALUATION = GenerationEvalParams(batch_size=2, device="cpu")


@pytest.fixture(scope="module")
def uniform(tmp_path_factory):
    root = tmp_path_factory.mktemp("uniform")
    texts = (PAIRS["prompt"] + PAIRS["chosen"]).tolist() + (PAIRS["prompt"] + PAIRS["rejected"]).tolist()
    built = build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=32), root / "built", texts)
    model, tokenizer = load_causal_lm(built)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.save_pretrained(root / "uniform")
    tokenizer.save_pretrained(root / "uniform")
    return ModelDirectory(root / "uniform", "causal_lm"), tokenizer


def test_the_reference_prefers_the_shorter_answer_and_the_length_groups_are_counted(uniform):
    model, tokenizer = uniform
    metrics, per_pair = evaluate_preference_pairs.entrypoint(model, model, PAIRS, EVALUATION, 0.1)

    def completion_tokens(column):  # as the step counts them: tokens of prompt + answer after the prompt's
        return [len(tokenizer(p + c)["input_ids"]) - len(tokenizer(p)["input_ids"])
                for p, c in zip(PAIRS["prompt"], PAIRS[column], strict=True)]

    chosen, rejected = completion_tokens("chosen"), completion_tokens("rejected")
    longer = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    shorter = sum(c < r for c, r in zip(chosen, rejected, strict=True))
    assert longer >= 1 and shorter >= 1  # the pairs above exercise both groups
    assert metrics["test_preference_accuracy"] == 0.0 and set(per_pair.values()) == {0.0}
    assert metrics["test_longer_answer_accuracy"] == pytest.approx(longer / 4)
    assert metrics["test_reference_logprob_accuracy"] == pytest.approx(shorter / 4)
    assert (metrics["test_chosen_longer_pairs"], metrics["test_rejected_longer_pairs"],
            metrics["test_equal_length_pairs"]) == (longer, shorter, 4 - longer - shorter)
    assert metrics["test_balanced_pairs"] == 2 * min(longer, shorter)
    assert metrics["test_balanced_longer_answer_accuracy"] == 0.5
    # The policy is never right: McNemar p compares the baselines' right answers with none (2·½^k, capped at 1).
    assert metrics["test_longer_answer_mcnemar_p"] == pytest.approx(min(1.0, 2 * 0.5**longer))
    assert metrics["test_reference_logprob_mcnemar_p"] == pytest.approx(min(1.0, 2 * 0.5**shorter))
    low, high = metrics["test_preference_accuracy_ci_low"], metrics["test_preference_accuracy_ci_high"]
    assert low == 0.0 and 0.0 < high < 1.0
