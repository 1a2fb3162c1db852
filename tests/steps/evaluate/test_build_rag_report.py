"""build_rag_report through ``.entrypoint()``: recall and ROUGE/BLEU of the intents, and the sample table."""

import pandas as pd

from steps.evaluate.build_rag_report import build_rag_report


def test_the_page_shows_recall_rouge_bleu_and_the_escaped_samples(page, refused):
    metrics = {"test_recall@3": 0.8333, "test_rougeL": 0.4567, "test_bleu": 23.4}
    samples = pd.DataFrame({"prompt": ["q <1>"], "reference": ["find a"], "generated": ["find b"], "rougeL": [0.5]})
    report = page(build_rag_report.entrypoint(metrics, samples, refused))
    assert report.has_row("test_recall@3", page.num("0.8333")) and report.has_row("test_bleu", page.num("23.4000"))
    assert report.has_row("q &lt;1&gt;", "find a", "find b", page.num("0.5000"))
    assert report.images == 1 and "not promoted" in report.promotion


def test_without_a_decision_there_is_no_promotion_section(page):
    report = page(build_rag_report.entrypoint({"test_bleu": 10.0}, pd.DataFrame({"prompt": ["p"]})))
    assert "Promotion" not in report.html and report.images == 0  # BLEU alone: no 0-1 chart
