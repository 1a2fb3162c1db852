"""build_dpo_report through ``.entrypoint()``: held-out preference metrics, training numbers, curves, the gate."""

from steps.evaluate.build_dpo_report import build_dpo_report


def test_the_page_shows_held_out_preference_metrics_and_the_refusal(page, refused):
    metrics = {"test_preference_accuracy": 0.75, "test_reward_margin": 0.0312}
    log = [{"step": 1, "loss": 0.69, "rewards/accuracies": 0.5},
           {"step": 2, "loss": 0.6, "eval_loss": 0.65, "eval_rewards/accuracies": 0.75}]
    report = page(build_dpo_report.entrypoint(metrics, {"method": "lora", "beta": 0.1}, log, refused))
    assert report.has_row("test_preference_accuracy", page.num("0.7500"))
    assert report.has_row("test_reward_margin", page.num("0.0312"))
    assert report.has_row("method", "lora") and report.has_row("beta", page.num("0.1000"))
    assert report.images == 2  # agreement and loss curves
    assert f"not promoted: {refused['reason']}" in report.promotion
