"""The ranking pipelines' report pages: reranker evaluation and curriculum comparison."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from finetune.reports.common import (
    html_table,
    image_tag,
    plot_curves,
    plot_loss_curve,
    plot_metric_bars,
    plot_per_query_gain,
    render_report,
    significance_headline,
)

if TYPE_CHECKING:
    from finetune.ranking.metrics import RunComparison


def _largest_changes(
    base: Mapping[str, float], cand: Mapping[str, float], n: int = 5
) -> list[dict[str, object]]:
    """Rows for the n biggest gains then the n biggest losses (each query once)."""
    deltas = sorted(((cand[q] - base[q], q) for q in base), reverse=True)
    picked = [*deltas[:n], *[d for d in deltas[-n:] if d not in deltas[:n]]]
    return [{"query": q, "baseline": base[q], "candidate": cand[q], "Δ": d} for d, q in picked]


def ranking_report(
    title: str,
    comparison: RunComparison,
    primary_metric: str,
    baseline: str,
    candidate: str,
    loss_history: Sequence[Mapping[str, float]] | None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The reranker evaluation page: headline, metric table and chart, loss curve, per-query gains, extras.

    Args:
        title: Page title.
        comparison: Output of :func:`finetune.ranking.metrics.compare_runs`.
        primary_metric: Metric for the headline and the per-query plot.
        baseline: Reference run; must be ``comparison.baseline`` (the p-values are against it).
        candidate: Run under test.
        loss_history: Trainer log entries; those with "loss" form the training curve and those with
            "eval_loss" the evaluation markers, both against "step". None or empty leaves the section out.
        extra: Key/value facts (model parameters, data fingerprints) shown as a table.

    Returns:
        The HTML document.

    Raises:
        ValueError: A run or metric is not in the comparison, or baseline is not the comparison's baseline.
    """
    if baseline != comparison.baseline:
        raise ValueError(f"the comparison's p-values are against {comparison.baseline!r}, not {baseline!r}")
    if candidate not in comparison.p_values:
        raise ValueError(f"candidate {candidate!r} is not a non-baseline run of the comparison")
    if primary_metric not in comparison.metrics:
        raise ValueError(f"primary_metric {primary_metric!r} is not one of {comparison.metrics}")

    base_pq = comparison.per_query[baseline][primary_metric]
    cand_pq = comparison.per_query[candidate][primary_metric]
    gains = {qid: cand_pq[qid] - base_pq[qid] for qid in base_pq}
    sections = [
        (
            "Summary",
            f'<p class="headline">{html.escape(significance_headline(comparison, primary_metric, candidate))}</p>',
        ),
        (
            "Metrics",
            html_table(comparison.to_rows())
            + f"<p>Means over {len(base_pq)} judged queries; p-values from a paired {comparison.stat_test} "
            f"test against {html.escape(baseline)}.</p>"
            + image_tag(plot_metric_bars(comparison.means), "metric means per run"),
        ),
    ]
    train = [(int(e["step"]), float(e["loss"])) for e in loss_history or [] if "loss" in e]
    evals = [(int(e["step"]), float(e["eval_loss"])) for e in loss_history or [] if "eval_loss" in e]
    if train:
        steps, losses = zip(*train, strict=True)
        sections.append(("Training loss", image_tag(plot_loss_curve(steps, losses, evals), "training loss curve")))
    sections.append(
        (
            f"Per-query {primary_metric}",
            image_tag(plot_per_query_gain(gains, primary_metric), f"per-query gain in {primary_metric}")
            + "<p>Largest gains and losses:</p>"
            + html_table(_largest_changes(base_pq, cand_pq)),
        )
    )
    if extra:
        sections.append(("Details", html_table([{"key": k, "value": v} for k, v in extra.items()])))
    return render_report(title, sections)


# ------------------------------------------------------------------------------------ curriculum learning


def curriculum_report(
    title: str,
    comparison: RunComparison,
    primary_metric: str,
    data_fractions: Mapping[str, Sequence[float]],
    loss_histories: Mapping[str, Sequence[Mapping[str, float]]],
    extra: Mapping[str, str] | None = None,
) -> str:
    """Curricula against standard training: headline per arm, pacing curves, metric table and chart, losses.

    Args:
        title: Page title.
        comparison: :func:`~finetune.ranking.metrics.compare_runs` output whose baseline is standard training
            (it may hold the first stage as one more run).
        primary_metric: Metric of the headlines.
        data_fractions: arm -> fraction of the training rows available at each optimizer step (pacing curve).
        loss_histories: arm -> Trainer log entries (those with "loss" are drawn against "step").
        extra: Key/value facts shown as a table.

    Returns:
        The HTML document.

    Raises:
        ValueError: The primary metric or an arm is not in the comparison.
    """
    if primary_metric not in comparison.metrics:
        raise ValueError(f"primary_metric {primary_metric!r} is not one of {comparison.metrics}")
    unknown = sorted(set(data_fractions) - set(comparison.means))
    if unknown:
        raise ValueError(f"arms {unknown} are not runs of the comparison")
    arms = [arm for arm in data_fractions if arm != comparison.baseline]
    headlines = "".join(
        f'<p class="headline">{html.escape(significance_headline(comparison, primary_metric, arm))}</p>' for arm in arms
    )
    pacing = {arm: list(enumerate(fractions)) for arm, fractions in data_fractions.items()}
    losses = {arm: [(int(e["step"]), float(e["loss"])) for e in log if "loss" in e]
              for arm, log in loss_histories.items()}
    n_queries = len(comparison.per_query[comparison.baseline][primary_metric])
    sections = [
        ("Summary", headlines),
        (
            "Pacing: fraction of the data available per step",
            image_tag(plot_curves(pacing, "optimizer step", "fraction of training rows", (0.0, 1.05)), "pacing curves")
            + "<p>Each step draws its batch uniformly from the easiest ⌊fraction × N⌋ rows "
            "(Penha &amp; Hauff 2020).</p>",
        ),
        (
            "Metrics",
            html_table(comparison.to_rows())
            + f"<p>Means over {n_queries} judged queries; p-values from a paired {comparison.stat_test} test "
            f"against {html.escape(comparison.baseline)}.</p>"
            + image_tag(plot_metric_bars(comparison.means), "metric means per run"),
        ),
    ]
    if any(losses.values()):
        sections.append(("Training loss", image_tag(plot_curves(losses, "step", "loss"), "training loss curves")))
    if extra:
        sections.append(("Details", html_table([{"key": k, "value": v} for k, v in extra.items()])))
    return render_report(title, sections)


