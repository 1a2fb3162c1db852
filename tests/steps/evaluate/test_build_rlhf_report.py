"""build_rlhf_report through ``.entrypoint()``: reward model accuracy, mean reward before and after RL, curves."""

from steps.evaluate.build_rlhf_report import build_rlhf_report


def test_the_page_shows_reward_before_and_after_rl(page, promoted):
    report = page(build_rlhf_report.entrypoint({"test_pairwise_accuracy": 0.875}, {"base_test_mean_reward": -0.25},
                                               {"test_mean_reward": 0.125}, [{"step": 1, "loss": 0.7}],
                                               [{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.2}], promoted))
    assert report.has_row("test_pairwise_accuracy", page.num("0.8750"))
    assert report.has_row("starting model", page.num("-0.2500"))
    assert report.has_row("after RL", page.num("0.1250"))
    assert report.images == 2  # reward-model loss and reward during RL
    assert "promoted to production" in report.promotion
