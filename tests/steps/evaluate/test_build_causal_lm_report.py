"""build_causal_lm_report through ``.entrypoint()``: perplexity before and after, training numbers, the decision."""

from steps.evaluate.build_causal_lm_report import build_causal_lm_report

LOG = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0, "eval_loss": 2.2}]


def test_the_page_shows_perplexity_before_and_after_and_the_decision(page, promoted):
    report = page(build_causal_lm_report.entrypoint({"base_test_perplexity": 41.25, "base_test_nll": 3.7197},
                                                    {"test_perplexity": 12.5, "test_nll": 2.5257},
                                                    {"steps": 20, "train_seconds": 1.5}, LOG, promoted))
    assert report.has_row("base", page.num("41.2500"), page.num("3.7197"))
    assert report.has_row("trained", page.num("12.5000"), page.num("2.5257"))
    assert report.has_row("steps", page.num("20")) and report.has_row("train_seconds", page.num("1.5000"))
    assert report.images == 1  # the loss curve
    assert "promoted to production: no production version yet; test_x 0.7000" in report.promotion


def test_without_a_decision_or_a_loss_there_is_no_promotion_section_and_no_curve(page):
    report = page(build_causal_lm_report.entrypoint({"base_test_perplexity": 40.0}, {"test_perplexity": 12.0},
                                                    {}, [{"step": 1, "eval_loss": 2.0}]))
    assert "Promotion" not in report.html and report.images == 0
    assert report.has_row("base", page.num("40.0000"), "<td></td>")  # no nll measured: an empty cell
