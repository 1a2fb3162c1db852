import pytest

from finetune.reports.training import (
    causal_lm_report,
    chart_values,
    method_comparison_report,
    method_row,
    versus_best,
)


def test_method_row_merges_stats_and_metrics():
    """8,192 of 254,848 parameters trainable = 3.2145 %."""
    stats = {"method": "lora", "trainable_parameters": 8192, "total_parameters": 254848, "peak_memory_mb": 11.2,
             "train_seconds": 7.4, "tokens_per_second": 6944.0, "validation_loss": 6.17, "steps": 80,
             "train_tokens": 51000}
    row = method_row("lora", stats, {"test_perplexity": 581.9}, {"test_rougeL": 0.1}, None)
    assert row["method"] == "lora" and "train_tokens" not in row
    assert row["test_perplexity"] == 581.9 and row["test_rougeL"] == 0.1
    assert row["trainable_percent"] == pytest.approx(3.2145, abs=1e-4)


def test_comparison_report_has_a_row_per_method_and_the_charts():
    rows = [method_row(name, {"trainable_parameters": n, "total_parameters": 1000, "validation_loss": loss},
                       {"test_rougeL": rouge})
            for name, n, loss, rouge in (("full", 1000, 2.0, 0.4), ("lora", 10, 3.0, 0.2), ("<b>x</b>", 5, 4.0, 0.1))]
    html = method_comparison_report(rows, {"base model": "tiny"})
    assert html.count("<tr>") == 3 + 1 + 1 + 1  # 3 methods + header, setup header + 1 setting
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html  # names are escaped
    assert html.count("data:image/png;base64,") == 1


def test_the_untuned_row_and_the_paired_comparisons_are_shown():
    rows = [{"method": "untuned", "trainable_parameters": 0, "test_rougeL": 0.1},
            {"method": "lora", "trainable_parameters": 10, "test_rougeL": 0.5, "rougeL_vs_untuned": 0.4,
             "rougeL_vs_untuned_ci_low": 0.15159, "rougeL_vs_untuned_ci_high": 0.64841, "rougeL_vs_untuned_p": 0.0202,
             "rougeL_vs_untuned_n": 3.0},
            {"method": "full", "trainable_parameters": 100, "test_rougeL": 0.6}]
    html = method_comparison_report(versus_best(rows, {"untuned": {"a": 0.1, "b": 0.2}, "lora": {"a": 0.5, "b": 0.4},
                                                       "full": {"a": 0.6, "b": 0.7}}, "full"))
    results, paired = html.split("<h2>Paired comparisons</h2>")
    assert results.count("<tr>") == 4 and "rougeL_vs_untuned" not in results  # header + 3 rows, no paired columns
    # lora: +0.4 against the untuned model; −0.2 against full (differences −0.1 and −0.3: t = −2, df 1, p = 0.2952)
    assert "+0.4000 [+0.1516, +0.6484]" in paired and "0.0202" in paired and "−0.2000" not in paired
    assert "-0.2000 [-1.4706, +1.0706]" in paired and "0.295" in paired
    assert paired.count("<tr>") == 2  # header + lora only


def test_a_chart_draws_only_the_rows_that_measured_its_quantity():
    """The untuned model trained nothing: no tokens/s bar (not a bar at 0), but its 0 trainable parameters are real."""
    rows = [{"method": "untuned", "trainable_parameters": 0, "test_rougeL": 0.1},
            {"method": "lora", "trainable_parameters": 10, "tokens_per_second": 80.0, "test_rougeL": 0.2},
            {"method": "full", "trainable_parameters": 100, "tokens_per_second": float("nan"), "test_rougeL": 0.3}]
    assert chart_values(rows, "tokens_per_second") == [("lora", 80.0)]
    assert chart_values(rows, "trainable_parameters") == [("untuned", 0.0), ("lora", 10.0), ("full", 100.0)]


def test_causal_lm_report_shows_before_and_after():
    log = [{"step": 10, "loss": 5.0}, {"step": 20, "loss": 4.0}, {"step": 20, "eval_loss": 4.2}]
    html = causal_lm_report({"base_test_perplexity": 600.0, "base_test_nll": 6.4},
                            {"test_perplexity": 28.4, "test_nll": 3.35}, {"steps": 20}, log)
    assert "600.0000" in html and "28.4000" in html and "data:image/png;base64," in html
