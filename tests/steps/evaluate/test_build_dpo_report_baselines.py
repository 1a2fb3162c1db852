"""build_dpo_report through ``.entrypoint()``: the table of the policy against its baselines on the same pairs.

The metrics are those of the constructed case in tests/finetune/generation/test_preference_baselines.py (8 pairs,
balanced subset of 4), so every cell is a hand-computed value.
"""

from finetune.generation.preference import comparison_metrics
from steps.evaluate.build_dpo_report import build_dpo_report

CORRECT = {"preference": [True, False, True, True, False, True, True, True],
           "reference_logprob": [True, True, False, True, True, False, False, False],
           "reference_logprob_per_token": [True] * 8,
           "longer_answer": [True] * 5 + [False] * 3}


def test_the_baseline_table_shows_accuracy_interval_and_mcnemar_p_per_system(page):
    metrics = {**comparison_metrics(CORRECT, [5, 5, 5, 5, 5, 1, 1, 3], [1, 1, 1, 1, 1, 5, 5, 3]),
               "test_reward_margin": 0.0312, "test_pairs": 8.0}
    report = page(build_dpo_report.entrypoint(metrics, {"beta": 0.1}, [], None))
    n = page.num
    # system, accuracy, 95% CI, McNemar p, balanced: accuracy, 95% CI, McNemar p, chosen longer, rejected longer
    assert report.has_row("DPO policy (implicit reward)", n("0.7500"), "0.4093 – 0.9285", "",
                          n("1.0000"), "0.5101 – 1.0000", "", n("0.6000"), n("1.0000"))
    assert report.has_row("reference log-prob", n("0.5000"), "0.2152 – 0.7848", n("0.688"),
                          n("0.2500"), "0.0456 – 0.6994", n("0.25"), n("0.8000"), n("0.0000"))
    assert report.has_row("reference log-prob per token", n("1.0000"), "0.6756 – 1.0000", n("0.5"),
                          n("1.0000"), "0.5101 – 1.0000", n("1"), n("1.0000"), n("1.0000"))
    assert report.has_row("longer answer", n("0.6250"), "0.3057 – 0.8632", n("1"),
                          n("0.5000"), "0.1500 – 0.8500", n("0.5"), "", "")
    assert "The same 8 held-out pairs" in report.html and "Chosen longer: 5 pairs; rejected longer: 2" in report.html
    # The held-out table keeps the policy's accuracy, margin and counts; the table above holds the rest.
    assert report.has_row("test_preference_accuracy", n("0.7500"))
    assert report.has_row("test_balanced_pairs", n("4.0000"))
    assert "<td>test_reference_logprob_accuracy</td>" not in report.html


def test_without_baseline_metrics_there_is_no_baseline_table(page):
    report = page(build_dpo_report.entrypoint({"test_preference_accuracy": 0.6}, {"beta": 0.1}, [], None))
    assert "Against the baselines" not in report.html
