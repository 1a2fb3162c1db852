"""The generation evaluation report: comparison rows, headline, sections present only with their data."""

import pytest

from finetune.reports.generation import comparison_rows, few_shot_headline, generation_report

METRICS = {"test_perplexity": 14.0, "test_rougeL": 0.5, "test_bleu": 20.0, "test_mc_accuracy_norm": 0.4}
FEW_SHOT = {"few_shot_test_rougeL": 0.3, "few_shot_test_bleu": 12.5, "few_shot_test_mc_accuracy_norm": 0.45}
SAMPLES = [{"prompt": "<b>bold</b> question", "reference": "yes", "generated": "no", "rougeL": 0.0}]


def test_comparison_rows_pair_metrics_with_the_baseline():
    """Δ = fine-tuned - few-shot: 0.5 - 0.3 = 0.2 (ROUGE-L), 20 - 12.5 = 7.5 (BLEU), 0.4 - 0.45 = -0.05 (MC);
    perplexity has no baseline value."""
    rows = {r["metric"]: r for r in comparison_rows(METRICS, FEW_SHOT)}
    assert rows["test_rougeL"]["Δ"] == pytest.approx(0.2)
    assert rows["test_bleu"]["Δ"] == pytest.approx(7.5)
    assert rows["test_mc_accuracy_norm"]["Δ"] == pytest.approx(-0.05)
    assert rows["test_perplexity"]["few-shot"] is None and rows["test_perplexity"]["Δ"] is None
    assert few_shot_headline(list(rows.values()), 3) == (
        "Fine-tuned model: test_rougeL 0.5000 vs 3-shot 0.3000 (Δ +0.2000); "
        "test_mc_accuracy_norm 0.4000 vs 3-shot 0.4500 (Δ -0.0500)."
    )
    assert few_shot_headline(comparison_rows(METRICS), 3) == "No few-shot baseline to compare with."


def test_report_sections_follow_the_inputs():
    full = generation_report("Eval", METRICS, SAMPLES, FEW_SHOT, SAMPLES, 3,
                             [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}], {"model": "tiny"})
    assert full.count("data:image/png;base64,") == 2  # comparison chart + loss curve
    assert "&lt;b&gt;bold&lt;/b&gt; question" in full and "<b>bold" not in full
    assert "Few-shot baseline generations" in full and "<td>tiny</td>" in full
    bare = generation_report("Eval", METRICS, SAMPLES)
    assert "data:image/png" not in bare and "Few-shot baseline generations" not in bare
    assert "No few-shot baseline to compare with." in bare
