"""The generation evaluation page: metric table, fine-tuned vs few-shot chart, loss curve, sample generations."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from finetune.reports.common import figure_to_data_uri, html_table, plot_loss_curve, render_report

FEW_SHOT_PREFIX = "few_shot_"

# Rates in [0, 1] share one chart axis; BLEU (0-100) and perplexity (1 to vocabulary size) would flatten them.
_CHARTED = ("rouge1", "rouge2", "rougeL", "mc_accuracy", "mc_accuracy_norm")


def comparison_rows(
    metrics: Mapping[str, float], few_shot: Mapping[str, float] | None = None
) -> list[dict[str, object]]:
    """One row per fine-tuned metric: its value, the few-shot baseline's (``few_shot_<name>``) and the difference.

    Args:
        metrics: ``<split>_<metric>`` values of the fine-tuned model.
        few_shot: The baseline's values, named ``few_shot_<split>_<metric>``; None leaves those columns empty.

    Returns:
        Rows with ``metric``, ``fine-tuned``, ``few-shot`` and ``Δ`` (None where the baseline lacks the metric).
    """
    rows = []
    for name, value in metrics.items():
        base = None if few_shot is None else few_shot.get(FEW_SHOT_PREFIX + name)
        rows.append({
            "metric": name,
            "fine-tuned": float(value),
            "few-shot": None if base is None else float(base),
            "Δ": None if base is None else float(value) - float(base),
        })
    return rows


def plot_comparison(values: Mapping[str, Mapping[str, float]]) -> str:
    """Grouped bars: one group per metric, one bar per model, each labelled with its value.

    Args:
        values: model label -> metric -> value (every model has the same metrics, all in [0, 1]).

    Returns:
        PNG data URI.
    """
    models = list(values)
    metrics = list(next(iter(values.values())))
    width = 0.8 / len(models)
    fig = Figure(figsize=(8.0, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, model in enumerate(models):
        positions = [m + (i - (len(models) - 1) / 2) * width for m in range(len(metrics))]
        bars = ax.bar(positions, [values[model][metric] for metric in metrics], width, label=model)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score on held-out data")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return figure_to_data_uri(fig)


def few_shot_headline(rows: Sequence[Mapping[str, object]], k: int | None) -> str:
    """One sentence: fine-tuned vs few-shot on ROUGE-L and normalised multiple-choice accuracy (when present)."""
    compared = [r for r in rows if r["few-shot"] is not None]
    if not compared:
        return "No few-shot baseline to compare with."
    shown = [r for r in compared if str(r["metric"]).endswith(("_rougeL", "_mc_accuracy_norm"))] or compared[:2]
    shots = f"{k}-shot" if k is not None else "few-shot"
    parts = [f"{r['metric']} {r['fine-tuned']:.4f} vs {shots} {r['few-shot']:.4f} (Δ {r['Δ']:+.4f})" for r in shown]
    return "Fine-tuned model: " + "; ".join(parts) + "."


def generation_report(
    title: str,
    metrics: Mapping[str, float],
    samples: Sequence[Mapping[str, object]],
    few_shot_metrics: Mapping[str, float] | None = None,
    few_shot_samples: Sequence[Mapping[str, object]] | None = None,
    few_shot_k: int | None = None,
    loss_history: Sequence[Mapping[str, float]] | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The generation evaluation page.

    Args:
        title: Page title.
        metrics: The fine-tuned model's metrics (``test_perplexity``, ``test_rougeL``, ``test_mc_accuracy`` ...).
        samples: Sample-generation rows (prompt, reference, generated, rougeL), worst first.
        few_shot_metrics: The untrained few-shot baseline's metrics (``few_shot_test_rougeL`` ...), or None.
        few_shot_samples: The baseline's sample rows, or None.
        few_shot_k: Examples in the baseline's prompts (for the labels).
        loss_history: Trainer log entries (``step`` with ``loss`` or ``eval_loss``); None leaves the curve out.
        extra: Key/value facts (model, method, data fingerprints) shown as a table.

    Returns:
        The HTML document.
    """
    rows = comparison_rows(metrics, few_shot_metrics)
    sections = [
        ("Summary", f'<p class="headline">{html.escape(few_shot_headline(rows, few_shot_k))}</p>'),
        ("Metrics", html_table(rows) + "<p>ROUGE: mean F-measure over the held-out prompts (rouge_score); BLEU: "
                    "corpus sacreBLEU (0-100); multiple choice: accuracy by option log-likelihood, raw and "
                    "length-normalised.</p>"),
    ]
    charted = {
        name: value for name, value in metrics.items()
        if name.split("_", 1)[-1] in _CHARTED and few_shot_metrics and FEW_SHOT_PREFIX + name in few_shot_metrics
    }
    if charted:
        label = f"{few_shot_k}-shot base model" if few_shot_k is not None else "few-shot base model"
        means = {"fine-tuned": charted, label: {n: few_shot_metrics[FEW_SHOT_PREFIX + n] for n in charted}}
        sections.append(("Fine-tuned vs few-shot", f'<img src="{plot_comparison(means)}" alt="metric comparison">'))
    train = [(int(e["step"]), float(e["loss"])) for e in loss_history or [] if "loss" in e]
    evals = [(int(e["step"]), float(e["eval_loss"])) for e in loss_history or [] if "eval_loss" in e]
    if train:
        steps, losses = zip(*train, strict=True)
        sections.append(("Training loss", f'<img src="{plot_loss_curve(steps, losses, evals)}" alt="loss curve">'))
    sections.append(("Sample generations (worst ROUGE-L first)", html_table(list(samples))))
    if few_shot_samples:
        sections.append(("Few-shot baseline generations", html_table(list(few_shot_samples))))
    if extra:
        sections.append(("Details", html_table([{"key": k, "value": v} for k, v in extra.items()])))
    return render_report(title, sections)
