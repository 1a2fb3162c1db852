"""Building blocks of every report page: self-contained HTML (inline CSS, PNG plots as data URIs, no scripts).

Plots are drawn on ``matplotlib.figure.Figure`` objects with the Agg renderer and never touch pyplot, so no
GUI backend is loaded and no global figure registry grows in long-running processes.
"""

from __future__ import annotations

import base64
import html
import io
import numbers
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    # Only for annotations: importing metrics loads scipy and torch (seconds) just to draw a page.
    from finetune.ranking.metrics import RunComparison

_POSITIVE, _NEGATIVE, _NEUTRAL = "#2e7d32", "#c62828", "#9e9e9e"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       font-size: 15px; line-height: 1.5; color: #1f2328;
       max-width: 1000px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #d0d7de; padding: .3em .7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; }
img { max-width: 100%; height: auto; }
p.headline { font-size: 1.1em; background: #f6f8fa; border-left: 4px solid #0969da; padding: .6em 1em; }
"""


def escape_mathtext(text: str) -> str:
    """``text`` with every ``$`` escaped, so matplotlib draws it as written.

    matplotlib reads text between two ``$`` as mathtext; an escaped dollar is drawn literally. Use it on every
    user string (run names, query ids, metric names) that goes into a label, a tick or a title.
    """
    return text.replace("$", r"\$")


def new_figure(width: float = 8.0, height: float = 4.0) -> Figure:
    """A bare matplotlib ``Figure`` (no pyplot, constrained layout, 100 dpi) of ``width`` × ``height`` inches.

    Render it with :func:`figure_to_data_uri`.
    """
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_to_data_uri(fig: Figure) -> str:
    """Render a figure as a ``data:image/png;base64,...`` URI and release it.

    Args:
        fig: A matplotlib figure (ideally a bare ``Figure``; a pyplot figure is closed after rendering).

    Returns:
        The PNG as a data URI, ready for ``<img src=...>``.
    """
    buffer = io.BytesIO()
    # No "Software" metadata: the same plot gives the same bytes, so report artifacts compare equal.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        # Only a figure made by pyplot is in its registry; closing an unknown figure is a no-op.
        pyplot.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_loss_curve(
    steps: Sequence[int],
    losses: Sequence[float],
    eval_points: Sequence[tuple[int, float]] | None = None,
) -> str:
    """Training loss against optimizer step, with optional evaluation losses as markers.

    Args:
        steps: Optimizer steps at which the training loss was logged.
        losses: Training loss at each step.
        eval_points: (step, eval loss) pairs, or None.

    Returns:
        PNG data URI.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot(list(steps), list(losses), color="#0969da", linewidth=1.5, label="train loss")
    if eval_points:
        eval_steps, eval_losses = zip(*eval_points, strict=True)
        ax.plot(eval_steps, eval_losses, "o--", color="#cf222e", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return figure_to_data_uri(fig)


def win_tie_loss(gains: Mapping[str, float]) -> tuple[int, int, int]:
    """Counts of queries where the candidate is better (> 0), equal (0) and worse (< 0)."""
    wins = sum(1 for g in gains.values() if g > 0)
    losses = sum(1 for g in gains.values() if g < 0)
    return wins, len(gains) - wins - losses, losses


def plot_per_query_gain(gains: Mapping[str, float], metric: str) -> str:
    """Sorted bars of candidate - baseline per query; green above zero, red below.

    Query ids label the x axis only up to 40 queries; beyond that the labels would overlap.

    Args:
        gains: qid -> candidate value - baseline value.
        metric: Metric name for the axis and title.

    Returns:
        PNG data URI.
    """
    ordered = sorted(gains.items(), key=lambda item: item[1], reverse=True)
    values = [value for _, value in ordered]
    colors = [_POSITIVE if v > 0 else _NEGATIVE if v < 0 else _NEUTRAL for v in values]
    wins, ties, losses = win_tie_loss(gains)
    fig = new_figure()
    ax = fig.add_subplot()
    ax.bar(range(len(values)), values, width=1.0 if len(values) > 40 else 0.8, color=colors, linewidth=0)
    ax.axhline(0.0, color="#1f2328", linewidth=0.8)
    if len(values) <= 40:
        ax.set_xticks(range(len(values)), [escape_mathtext(qid) for qid, _ in ordered], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel(f"queries ({len(values)}), sorted by gain")
    ax.set_ylabel(f"Δ {escape_mathtext(metric)}")
    ax.set_title(f"Per-query Δ {escape_mathtext(metric)}: {wins} wins / {ties} ties / {losses} losses")
    ax.grid(axis="y", alpha=0.3)
    return figure_to_data_uri(fig)


def plot_metric_bars(means: Mapping[str, Mapping[str, float]]) -> str:
    """Grouped bars: one group per metric, one bar per run, each labelled with its value.

    Args:
        means: run -> metric -> mean value (every run has the same metrics).

    Returns:
        PNG data URI.
    """
    runs = list(means)
    metrics = list(next(iter(means.values()))) if means else []
    width = 0.8 / max(len(runs), 1)
    fig = new_figure()
    ax = fig.add_subplot()
    for i, run in enumerate(runs):
        positions = [m + (i - (len(runs) - 1) / 2) * width for m in range(len(metrics))]
        bars = ax.bar(positions, [means[run][metric] for metric in metrics], width, label=escape_mathtext(run))
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(metrics)), [escape_mathtext(metric) for metric in metrics])
    ax.set_ylabel("mean over judged queries")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return figure_to_data_uri(fig)


def _cell(value: object, float_fmt: str) -> tuple[str, bool]:
    """(escaped text, is numeric) for one table cell; None is an empty cell."""
    if value is None:
        return "", False
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return html.escape(float_fmt.format(value)), True
    return html.escape(str(value)), isinstance(value, numbers.Real) and not isinstance(value, bool)


def html_table(rows: Sequence[Mapping[str, object]], float_fmt: str = "{:.4f}", p_fmt: str = "{:.3g}") -> str:
    """An HTML table; columns are the rows' keys in order of first appearance, all text escaped.

    Args:
        rows: One mapping per row; a missing key or None is an empty cell.
        float_fmt: Format for non-integral numbers.
        p_fmt: Format for p-value columns (named ``... p``), so 2.7e-12 does not print as 0.0000.

    Returns:
        A ``<table>`` element.
    """
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            text, numeric = _cell(row.get(column), p_fmt if str(column).endswith(" p") else float_fmt)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image_tag(data_uri: str, alt: str) -> str:
    """An ``<img>`` element showing ``data_uri`` (from :func:`figure_to_data_uri`), with ``alt`` escaped."""
    return f'<img src="{data_uri}" alt="{html.escape(alt)}">'


def render_report(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A complete HTML document: the escaped title, then each (heading, inner HTML) section.

    Args:
        title: Page title and top heading (escaped).
        sections: (heading, body) pairs; headings are escaped, bodies are trusted HTML built by this module.

    Returns:
        The HTML document.
    """
    parts = [f"<h2>{html.escape(heading)}</h2>\n{body}" for heading, body in sections]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )


def significance_headline(comparison: RunComparison, metric: str, candidate: str) -> str:
    """One sentence: candidate vs baseline on ``metric``, the delta, the p-value and the verdict."""
    base = comparison.means[comparison.baseline][metric]
    cand = comparison.means[candidate][metric]
    delta = cand - base
    relative = f" ({delta / base:+.1%})" if base else ""
    p = comparison.p_values[candidate][metric]
    verdict = "significant" if comparison.significant[candidate][metric] else "not significant"
    return (
        f"{candidate} scores {metric} {cand:.4f} vs {comparison.baseline} {base:.4f}: "
        f"Δ {delta:+.4f}{relative}, p = {p:.4g} (paired {comparison.stat_test} test), "
        f"{verdict} at α = {comparison.alpha}."
    )


def plot_curves(curves: Mapping[str, Sequence[tuple[float, float]]], xlabel: str, ylabel: str,
                ylim: tuple[float, float] | None = None) -> str:
    """One line per named series of (x, y) points, e.g. pacing curves or loss curves of several runs.

    Args:
        curves: name -> points; empty series are left out.
        xlabel: X axis label.
        ylabel: Y axis label.
        ylim: Fixed y range, or None to fit the data.

    Returns:
        PNG data URI.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    for name, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, linewidth=1.5, label=escape_mathtext(name),
                    drawstyle="steps-post" if len(xs) < 400 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend()
    return figure_to_data_uri(fig)


def promotion_html(decision: Mapping[str, object]) -> str:
    """The promotion gate's decision as an HTML section: the outcome, its reason and the numbers behind it."""
    outcome = f"promoted to {decision['stage']}" if decision["promote"] else "not promoted"
    rows = [{key: decision.get(key) for key in ("metric", "candidate", "baseline", "production",
                                                   "production_version", "p_value", "n_items", "alpha")}]
    return (f"<h2>Promotion</h2>\n<p class=\"headline\">{html.escape(outcome)}: "
            f"{html.escape(str(decision['reason']))}</p>\n{html_table(rows)}")


def with_promotion(report: str, decision: Mapping[str, object] | None) -> str:
    """``report`` (a document from :func:`render_report`) with the promotion section at the end of its body."""
    if decision is None:
        return report
    head, body_end, tail = report.rpartition("</body>")
    if not body_end:
        raise ValueError("the report has no </body> to insert the promotion section before")
    return f"{head}{promotion_html(decision)}\n{body_end}{tail}"
