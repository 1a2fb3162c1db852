"""The dashboard page of a tokenized split (``TokenizedDataset``): counts, the length histogram and truncation."""

from __future__ import annotations

import html
from collections.abc import Mapping

from finetune.reports.common import figure_to_data_uri, html_table, image_tag, new_figure, render_report


def plot_length_histogram(histogram: list[Mapping[str, int]], max_length: int, kind: str) -> str:
    """Bars of examples per token-length bin, with ``max_length`` as a dashed line (longer examples are cut for
    SFT, split across blocks for packed text)."""
    fig = new_figure(8.0, 3.2)
    ax = fig.add_subplot()
    ax.bar([b["low"] for b in histogram], [b["count"] for b in histogram],
           width=[b["high"] - b["low"] for b in histogram], align="edge", color="#0969da", edgecolor="white")
    ax.axvline(max_length, color="#c62828", linestyle="--",
               label=f"{'max_length' if kind == 'sft' else 'block'} {max_length}")
    ax.set_xlabel("tokens per example (before truncation)" if kind == "sft" else "tokens per document")
    ax.set_ylabel("examples" if kind == "sft" else "documents")
    ax.legend()
    return figure_to_data_uri(fig)


def tokenized_dataset_html(stats: Mapping[str, object]) -> str:
    """One HTML page: what was tokenized with what, the counts, the length statistics and histogram."""
    sft = stats["kind"] == "sft"
    unit = "examples" if sft else "documents"
    counts = {f"{unit} in": stats["examples"], "sequences" if sft else "blocks": stats["rows"],
              "tokens": stats["tokens"], "loss tokens": stats["loss_tokens"]}
    if sft:
        counts |= {"truncated examples": stats["truncated"], "truncation rate": stats["truncation_rate"],
                   "dropped (prompt fills max_length)": stats["dropped_no_completion"]}
    else:
        counts |= {"tokens dropped (last partial block)": stats["truncated"],
                   "dropped token rate": stats["truncation_rate"]}
    settings = {"kind": stats["kind"], "split": stats["split"], "tokenizer": stats["tokenizer"],
                "max_length" if sft else "block tokens": stats["max_length"]}
    if sft:
        settings |= {"completion only": stats["completion_only"], "template": stats["template"]}
    sections = [("Settings", html_table([settings])), ("Counts", html_table([counts])),
                ("Token lengths", html_table([dict(stats["lengths"])], float_fmt="{:.2f}"))]
    if stats["histogram"]:
        sections.append(("Length histogram", image_tag(
            plot_length_histogram(stats["histogram"], int(stats["max_length"]), str(stats["kind"])),
            f"histogram of {unit} by token length")))
    else:
        sections.append(("Length histogram", f"<p>No {html.escape(unit)}.</p>"))
    return render_report(f"Tokenized {stats['split']} ({stats['kind']})", sections)
