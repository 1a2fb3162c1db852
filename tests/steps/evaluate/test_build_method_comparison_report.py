"""build_method_comparison_report through ``.entrypoint()``: one row per method; NaN is "not measured"."""

import pandas as pd

import steps.evaluate.build_method_comparison_report as module
from steps.evaluate.build_method_comparison_report import build_method_comparison_report


def test_every_method_is_shown_and_recorded_without_its_unmeasured_values(page, promoted, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    results = pd.DataFrame([{"method": "full", "test_rougeL": 0.41234, "trainable_percent": 100.0},
                            {"method": "lora", "test_rougeL": 0.45678, "trainable_percent": float("nan")}])
    report = page(build_method_comparison_report.entrypoint(results, {"base model": "tiny <gpt2>"}, promoted))
    assert report.has_row("full", page.num("0.4123"), page.num("100"))  # {:.4g}
    assert report.has_row("lora", page.num("0.4568"), "<td></td>")  # NaN: not measured, an empty cell
    assert report.has_row("base model", "tiny &lt;gpt2&gt;")
    assert recorded == [{"methods": {"full": {"test_rougeL": 0.41234, "trainable_percent": 100.0},
                                     "lora": {"test_rougeL": 0.45678}}}]
    assert report.images == 1 and "promoted to production" in report.promotion
