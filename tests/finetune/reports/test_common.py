"""HTML reports: values, headline arithmetic, embedded PNGs and escaping of user strings."""

import base64
import re

import pytest

from finetune.ranking.metrics import RunComparison
from finetune.reports.common import html_table, plot_metric_bars, render_report, win_tie_loss
from finetune.reports.ranking import ranking_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"


def _comparison() -> RunComparison:
    """Four queries; nDCG@10 baseline 0.5 on each (mean 0.5), candidate 1.0, 0.5, 0.75, 0.25 (mean 0.625)."""
    base = {"q1": 0.5, "q2": 0.5, EVIL: 0.5, "q4": 0.5}
    cand = {"q1": 1.0, "q2": 0.5, EVIL: 0.75, "q4": 0.25}
    return RunComparison(
        baseline="bm25",
        metrics=["ndcg@10", "mrr@10"],
        means={"bm25": {"ndcg@10": 0.5, "mrr@10": 0.4}, "ce $\\x$": {"ndcg@10": 0.625, "mrr@10": 0.45}},
        per_query={"bm25": {"ndcg@10": base, "mrr@10": base}, "ce $\\x$": {"ndcg@10": cand, "mrr@10": cand}},
        p_values={"ce $\\x$": {"ndcg@10": 0.0123, "mrr@10": 0.4}},
        significant={"ce $\\x$": {"ndcg@10": True, "mrr@10": False}},
        alpha=0.05,
        stat_test="fisher",
    )


def _pngs(document: str) -> list[bytes]:
    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', document)
    return [base64.b64decode(m) for m in found]


def test_ranking_report_states_values_delta_and_embeds_plots():
    """Headline: 0.6250 - 0.5000 = +0.1250, relative +0.1250 / 0.5 = +25.0%; p = 0.0123 < 0.05 -> significant.

    Per-query gains +0.5, 0, +0.25, -0.25: 2 wins / 1 tie / 1 loss. The "$\\x$" in the run name would be an
    unknown mathtext symbol if it reached matplotlib unescaped.
    """
    history = [{"step": 10, "loss": 0.9}, {"step": 20, "loss": 0.6}, {"step": 20, "eval_loss": 0.7}]

    extra = {"seed": "42", "x": EVIL}
    document = ranking_report(
        f"Reranker {EVIL}", _comparison(), "ndcg@10", "bm25", "ce $\\x$", history, extra
    )

    assert document.startswith("<!DOCTYPE html>")
    assert "ce $\\x$ scores ndcg@10 0.6250 vs bm25 0.5000: Δ +0.1250 (+25.0%), p = 0.0123" in document
    assert "significant at α = 0.05" in document and "not significant" not in document
    for value in ("0.5000", "0.6250", "0.4000", "0.4500"):
        assert f'<td class="num">{value}</td>' in document
    pngs = _pngs(document)
    assert len(pngs) == 3  # metric bars, loss curve, per-query gains
    assert all(png.startswith(PNG_SIGNATURE) for png in pngs)
    assert win_tie_loss({"q1": 0.5, "q2": 0.0, "q3": 0.25, "q4": -0.25}) == (2, 1, 1)


def test_user_strings_are_escaped():
    document = ranking_report(EVIL, _comparison(), "ndcg@10", "bm25", "ce $\\x$", None, extra={EVIL: EVIL})

    assert "<script>" not in document
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert len(_pngs(document)) == 2  # no loss history, no loss curve


def test_report_rejects_a_baseline_the_p_values_are_not_against():
    with pytest.raises(ValueError, match="p-values are against 'bm25'"):
        ranking_report("t", _comparison(), "ndcg@10", "ce $\\x$", "bm25", None)


def test_html_table_formats_and_escapes_cells():
    table = html_table([{"run": "a<b", "ndcg@10": 0.123456, "n": 7}, {"run": "c", "p": None}])

    assert "<th>run</th><th>ndcg@10</th><th>n</th><th>p</th>" in table
    assert '<td>a&lt;b</td><td class="num">0.1235</td><td class="num">7</td><td></td>' in table
    assert "<td>c</td><td></td><td></td><td></td>" in table


def test_render_report_and_metric_bars_stand_alone():
    uri = plot_metric_bars({"bm25": {"ndcg@10": 0.5}, "ce": {"ndcg@10": 0.6}})
    document = render_report("T & U", [("Plot", f'<img src="{uri}">')])

    assert "<title>T &amp; U</title>" in document and "<h2>Plot</h2>" in document
    assert _pngs(document)[0].startswith(PNG_SIGNATURE)
    assert "<script" not in document and "http" not in document  # no scripts, no external assets
