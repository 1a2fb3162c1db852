"""HTML reports of the generation training pipelines: the method comparison and continued pre-training.

Built from ``finetune.reports.common`` (tables, PNG plots as data URIs, one self-contained page); no scripts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from finetune.promotion import UNTUNED, paired_difference
from finetune.reports.common import (
    escape_mathtext,
    figure_to_data_uri,
    html_table,
    image_tag,
    new_figure,
    plot_loss_curve,
    render_report,
)

# Column of the comparison table -> (chart title, higher is better). Only columns present in the rows are drawn.
COMPARISON_COLUMNS: dict[str, tuple[str, bool]] = {
    "trainable_parameters": ("trainable parameters", False),
    "peak_memory_mb": ("peak memory (MB)", False),
    "train_seconds": ("wall time (s)", False),
    "tokens_per_second": ("tokens / s", True),
    "validation_loss": ("validation loss", False),
    "test_perplexity": ("test perplexity", False),
    "test_rougeL": ("test ROUGE-L", True),
    "test_mc_accuracy": ("multiple-choice accuracy", True),
}

# The paired comparisons a row may carry (``finetune.promotion.paired_difference`` names): shown in their own table.
PAIRED = {"rougeL_vs_untuned": "ROUGE-L − untuned", "nll_vs_untuned": "NLL − untuned (nats/token)",
          "rougeL_vs_best": "ROUGE-L − best method"}
PAIRED_SUFFIXES = ("", "_ci_low", "_ci_high", "_p", "_n")


def method_row(method: str, training_stats: Mapping[str, object], *metric_dicts: Mapping[str, float] | None) -> dict:
    """One row of the comparison: the method, its training measurements and its evaluation metrics."""
    row: dict[str, object] = {"method": method}
    for key in ("trainable_parameters", "total_parameters", "peak_memory_mb", "train_seconds", "tokens_per_second",
                "validation_loss", "validation_perplexity", "steps"):
        if key in training_stats:
            row[key] = training_stats[key]
    for metrics in metric_dicts:
        row.update(metrics or {})
    total = row.get("total_parameters")
    if total:
        row["trainable_percent"] = 100.0 * float(row["trainable_parameters"]) / float(total)
    return row


def chart_values(rows: Sequence[Mapping[str, object]], column: str) -> list[tuple[str, float]]:
    """(method, value) of the rows that measured ``column``, in row order: what one chart of the comparison draws."""
    return [(str(r["method"]), float(r[column])) for r in rows
            if isinstance(r.get(column), int | float) and not math.isnan(float(r[column]))]


def plot_method_comparison(rows: Sequence[Mapping[str, object]]) -> str:
    """One small bar chart per measured quantity, methods side by side, each bar labelled with its value; the best
    trained method's bar is green, the untuned baseline's grey. A row without a value for a quantity (the untuned
    model has no tokens/s or validation loss) has no bar in that chart, rather than a bar at 0."""
    columns = [c for c in COMPARISON_COLUMNS if chart_values(rows, c)]
    ncols = 3
    nrows = max(1, math.ceil(len(columns) / ncols))
    fig = new_figure(11.0, 3.0 * nrows)
    for i, column in enumerate(columns):
        title, higher_better = COMPARISON_COLUMNS[column]
        ax = fig.add_subplot(nrows, ncols, i + 1)
        shown = chart_values(rows, column)
        values = [v for _, v in shown]
        trained = [v for name, v in shown if name != UNTUNED] or values
        best = max(trained) if higher_better else min(trained)
        colors = ["#8c959f" if name == UNTUNED else "#2e7d32" if v == best else "#0969da" for name, v in shown]
        bars = ax.bar([escape_mathtext(name) for name, _ in shown], values, color=colors)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_title(f"{title} ({'higher' if higher_better else 'lower'} is better)", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        if column == "trainable_parameters" and max(values) > 0:
            ax.set_yscale("symlog", linthresh=1.0)  # log-like, and the untuned model's 0 stays drawable
        ax.grid(axis="y", alpha=0.3)
    return figure_to_data_uri(fig)


def versus_best(rows: Sequence[Mapping[str, object]], per_item: Mapping[str, Mapping[str, float]], best: str
                ) -> list[dict]:
    """``rows`` with each trained method's paired ROUGE-L difference from ``best`` (``rougeL_vs_best*``) added,
    from ``per_item`` (method -> prompt -> ROUGE-L); the best method and the untuned row get none."""
    out = []
    for row in rows:
        row = dict(row)
        name = str(row["method"])
        if name not in (best, UNTUNED) and name in per_item and best in per_item:
            row.update(paired_difference(per_item[name], per_item[best], "rougeL_vs_best"))
        out.append(row)
    return out


def paired_table(rows: Sequence[Mapping[str, object]]) -> list[dict]:
    """One row per method with its paired comparisons: mean difference [95 % interval], p and items paired."""
    table = []
    for row in rows:
        entry: dict[str, object] = {"method": row["method"]}
        for key, label in PAIRED.items():
            if isinstance(row.get(key), int | float):
                entry[label] = (f"{float(row[key]):+.4f} [{float(row[f'{key}_ci_low']):+.4f}, "
                                f"{float(row[f'{key}_ci_high']):+.4f}]")
                entry[f"{label} p"] = float(row[f"{key}_p"])
                entry[f"{label}: items"] = int(row[f"{key}_n"])
        if len(entry) > 1:
            table.append(entry)
    return table


def method_comparison_report(rows: Sequence[Mapping[str, object]], details: Mapping[str, str] | None = None) -> str:
    """The method comparison page: the table (with the untuned base model's row where it was measured), the
    charts, each method's paired comparisons with the untuned model and the best method, and how the numbers were
    measured."""
    paired_keys = {f"{key}{suffix}" for key in PAIRED for suffix in PAIRED_SUFFIXES}
    main = [{k: v for k, v in row.items() if k not in paired_keys} for row in rows]
    notes = (
        "<p>All methods start from the same base model and train on the same data with the same optimisation "
        "budget. Peak memory is <code>torch.cuda.max_memory_allocated</code> on a GPU; on a CPU it is the increase "
        "of the process's resident memory during training, sampled every 20 ms. Tokens/s counts the non-padding "
        "input tokens the trainer saw. Validation loss is that of the kept (best) checkpoint.</p>"
        "<p>Paired comparisons are per test prompt (ROUGE-L) or per scored window (NLL, the log of each window's "
        "perplexity): the mean difference, its 95 % t interval and the paired t-test's p.</p>"
    )
    sections = [("Results", html_table(main, float_fmt="{:.4g}")),
                ("Charts", image_tag(plot_method_comparison(main), "method comparison charts"))]
    paired = paired_table(rows)
    if paired:
        sections.append(("Paired comparisons", html_table(paired)))
    if details:
        sections.append(("Setup", html_table([{"setting": k, "value": v} for k, v in details.items()])))
    sections.append(("How it was measured", notes))
    return render_report("Fine-tuning method comparison", sections)


def causal_lm_report(before: Mapping[str, float], after: Mapping[str, float], training_stats: Mapping[str, object],
                     log_history: Sequence[Mapping[str, object]]) -> str:
    """Continued pre-training: held-out perplexity before and after, training measurements, loss curve."""
    rows = [{"model": "base", "test perplexity": before.get("base_test_perplexity"),
             "test nll": before.get("base_test_nll")},
            {"model": "trained", "test perplexity": after.get("test_perplexity"), "test nll": after.get("test_nll")}]
    train = [(int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e and "step" in e]
    evals = [(int(e["step"]), float(e["eval_loss"])) for e in log_history if "eval_loss" in e and "step" in e]
    sections = [("Held-out perplexity", html_table(rows)),
                ("Training", html_table([{"measure": k, "value": v} for k, v in training_stats.items()]))]
    if train:
        steps, losses = zip(*train, strict=True)
        sections.append(("Loss", image_tag(plot_loss_curve(steps, losses, evals or None), "loss curve")))
    return render_report("Continued pre-training", sections)
