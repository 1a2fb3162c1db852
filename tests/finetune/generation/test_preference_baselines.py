"""The policy against its baselines on the same held-out pairs: per-pair correctness, Wilson intervals, exact McNemar
p-values and the length-balanced subset, on hand-built cases with hand-computed values (z = 1.959964)."""

import pytest

from finetune.generation.preference import (
    SYSTEMS,
    comparison_metrics,
    length_balanced_pairs,
    mcnemar_p,
    pair_correctness,
    wilson_interval,
)


def test_pair_correctness_of_the_policy_and_each_baseline():
    """β = 0.5; policy reward r = β·(log π − log π_ref), baselines from the reference and the token counts:
    pair 1: r_c = 0.5·(−2+4) = 1 > r_r = 0.5·(−3+3) = 0 ✓; ref −4 > −3 ✗; per token −4/4 = −1 > −3/2 ✓; 4 > 2 ✓
    pair 2: r_c = 0 > r_r = 0.5·(−4+6) = 1 ✗;           ref −5 > −6 ✓; per token −1 > −3 ✓;              5 > 2 ✓
    pair 3: r_c = 0.5 > r_r = −0.5 ✓;                    ref −2 > −6 ✓; per token −2 > −6/3 = −2 (tie) ✗; 1 > 3 ✗
    pair 4: everything equal: every system ties, and a tie is wrong ✗ ✗ ✗ ✗
    """
    correct = pair_correctness(chosen=[-2, -5, -1, -3], rejected=[-3, -4, -7, -3], ref_chosen=[-4, -5, -2, -3],
                               ref_rejected=[-3, -6, -6, -3], chosen_tokens=[4, 5, 1, 2],
                               rejected_tokens=[2, 2, 3, 2], beta=0.5)
    assert correct == {"preference": [True, False, True, False],
                       "reference_logprob": [False, True, True, False],
                       "reference_logprob_per_token": [True, True, False, False],
                       "longer_answer": [True, True, False, False]}
    with pytest.raises(ValueError, match="one value per pair"):
        pair_correctness([-1], [-1], [-1], [-1], [1, 2], [1], 0.1)


def test_wilson_interval_matches_the_closed_form():
    """Wilson: (p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n), z² = 3.841459.
    6/8: centre (0.75 + 0.240091) / 1.480182 = 0.668899, half 1.959964·√(0.0234375 + 0.0150057) / 1.480182
    = 0.259622 → (0.409277, 0.928521). 8/8: low = 1 / (1 + z²/8) = 0.675592, high 1.
    """
    assert wilson_interval(6, 8) == pytest.approx((0.409275, 0.928521), abs=1e-6)
    assert wilson_interval(8, 8) == pytest.approx((0.675592, 1.0), abs=1e-6)
    assert wilson_interval(0, 2) == pytest.approx((0.0, 0.657620), abs=1e-6)


def test_exact_mcnemar_counts_only_discordant_pairs():
    """4 pairs right for a alone, 2 for b alone: two-sided binomial, P = 2·P(X ≤ 2 | n 6, ½) = 2·(1+6+15)/64
    = 0.6875. 3 for a alone, none for b: 2·(½)³ = 0.25. Same correctness everywhere: no evidence, 1.0."""
    a = [True, False, True, True, False, True, True, True]
    b = [True, True, False, True, True, False, False, False]
    assert mcnemar_p(a, b) == pytest.approx(0.6875)
    assert mcnemar_p(b, a) == pytest.approx(0.6875)
    assert mcnemar_p([True] * 3 + [False], [False] * 4) == pytest.approx(0.25)
    assert mcnemar_p(a, a) == 1.0


def test_length_balanced_pairs_are_deterministic_and_evenly_spread():
    """Chosen longer at positions 0–4 (L = 5), rejected longer at 5 and 6 (m = 2), equal length at 7: keep 5 and 6,
    and of the larger group its members ⌊0·5/2⌋ = 0 and ⌊1·5/2⌋ = 2, i.e. positions 0 and 2."""
    chosen, rejected = [5, 5, 5, 5, 5, 1, 1, 3], [1, 1, 1, 1, 1, 5, 5, 3]
    assert length_balanced_pairs(chosen, rejected) == [0, 2, 5, 6]
    assert length_balanced_pairs(rejected, chosen) == [0, 2, 5, 6]  # the groups swap roles, same positions
    assert length_balanced_pairs([2, 3, 4], [1, 1, 1]) == []  # no pair has the rejected answer longer
    # Three against three: all are kept.
    assert length_balanced_pairs([2, 1, 2, 1, 2, 1], [1, 2, 1, 2, 1, 2]) == [0, 1, 2, 3, 4, 5]


def test_comparison_metrics_on_a_constructed_case():
    """8 pairs: chosen longer at 0–4, rejected longer at 5–6, equal at 7; balanced subset 0, 2, 5, 6.
    policy  T F T T F T T T: 6/8 = 0.75 (Wilson 0.409275–0.928521); balanced T T T T = 1.0
    ref     T T F T T F F F: 4/8 = 0.5 (0.215216–0.784784); McNemar: policy alone right at 2, 5, 6, 7, ref alone
            at 1, 4 → 0.6875; balanced T F F F = 0.25, policy alone right 3 times, ref never → 0.25
    per tok all right: 1.0 (0.675592–1); McNemar 0 against 2 → 2·(½)² = 0.5; balanced 1.0, no discordant → 1.0
    longer  T T T T T F F F: 5/8; McNemar 3 (5, 6, 7) against 2 (1, 4) → 2·P(X ≤ 2 | 5) = 1.0; balanced
            T T F F = 0.5 exactly, McNemar 2 against 0 → 0.5
    chosen longer (0–4): policy 3/5, ref 4/5, per token 1; rejected longer (5, 6): policy 1, ref 0, per token 1.
    """
    correct = {"preference": [True, False, True, True, False, True, True, True],
               "reference_logprob": [True, True, False, True, True, False, False, False],
               "reference_logprob_per_token": [True] * 8,
               "longer_answer": [True] * 5 + [False] * 3}
    metrics = comparison_metrics(correct, [5, 5, 5, 5, 5, 1, 1, 3], [1, 1, 1, 1, 1, 5, 5, 3])
    expected = {
        "test_preference_accuracy": 0.75, "test_preference_accuracy_ci_low": 0.409275,
        "test_preference_accuracy_ci_high": 0.928521,
        "test_reference_logprob_accuracy": 0.5, "test_reference_logprob_accuracy_ci_low": 0.215216,
        "test_reference_logprob_accuracy_ci_high": 0.784784, "test_reference_logprob_mcnemar_p": 0.6875,
        "test_reference_logprob_per_token_accuracy": 1.0, "test_reference_logprob_per_token_accuracy_ci_low": 0.675592,
        "test_reference_logprob_per_token_accuracy_ci_high": 1.0, "test_reference_logprob_per_token_mcnemar_p": 0.5,
        "test_longer_answer_accuracy": 0.625, "test_longer_answer_mcnemar_p": 1.0,
        "test_balanced_pairs": 4.0,
        "test_balanced_preference_accuracy": 1.0, "test_balanced_preference_accuracy_ci_low": 0.510109,
        "test_balanced_reference_logprob_accuracy": 0.25, "test_balanced_reference_logprob_mcnemar_p": 0.25,
        "test_balanced_reference_logprob_per_token_accuracy": 1.0,
        "test_balanced_reference_logprob_per_token_mcnemar_p": 1.0,
        "test_balanced_longer_answer_accuracy": 0.5, "test_balanced_longer_answer_mcnemar_p": 0.5,
        "test_chosen_longer_pairs": 5.0, "test_rejected_longer_pairs": 2.0, "test_equal_length_pairs": 1.0,
        "test_chosen_longer_preference_accuracy": 0.6, "test_chosen_longer_reference_logprob_accuracy": 0.8,
        "test_chosen_longer_reference_logprob_per_token_accuracy": 1.0,
        "test_rejected_longer_preference_accuracy": 1.0, "test_rejected_longer_reference_logprob_accuracy": 0.0,
        "test_rejected_longer_reference_logprob_per_token_accuracy": 1.0,
    }
    assert {k: metrics[k] for k in expected} == pytest.approx(expected, abs=1e-6)
    # Every system has accuracy and interval on all pairs and on the balanced subset; every baseline a McNemar p.
    per_subset = 3 * len(SYSTEMS) + len(SYSTEMS) - 1
    assert len(metrics) == 2 * per_subset + 1 + 3 + 2 * (len(SYSTEMS) - 1)
    assert all(isinstance(v, float) for v in metrics.values())


def test_comparison_metrics_without_a_balanced_subset_leave_it_out():
    """Every chosen answer longer: the balanced subset is empty (size 0, no accuracies); the rejected-longer group
    has no accuracies either."""
    correct = {**{system: [True, False] for system in SYSTEMS}, "longer_answer": [True, True]}
    metrics = comparison_metrics(correct, [3, 2], [1, 1], split="x")
    assert metrics["x_balanced_pairs"] == 0.0 and metrics["x_rejected_longer_pairs"] == 0.0
    assert not any(k.startswith("x_balanced_") and k != "x_balanced_pairs" for k in metrics)
    assert not any(k.startswith("x_rejected_longer_") and k != "x_rejected_longer_pairs" for k in metrics)
    # One discordant pair (the longer answer alone right): 2·P(X ≤ 0 | n 1, ½) = 1, capped at 1.
    assert metrics["x_longer_answer_accuracy"] == 1.0 and metrics["x_longer_answer_mcnemar_p"] == 1.0
    with pytest.raises(ValueError, match="at least one pair"):
        comparison_metrics({system: [] for system in SYSTEMS}, [], [])
