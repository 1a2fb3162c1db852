"""HTML report of DPO alignment: held-out preference metrics, the policy against its baselines on the same pairs, and
the preference agreement logged during training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from finetune.generation.preference import SYSTEMS, agreement_curves
from finetune.reports.common import html_table, image_tag, plot_curves, render_report

LABELS = {"preference": "DPO policy (implicit reward)", "reference_logprob": "reference log-prob",
          "reference_logprob_per_token": "reference log-prob per token", "longer_answer": "longer answer"}


def _interval(metrics: Mapping[str, float], name: str) -> str | None:
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    return None if low is None or high is None else f"{low:.4f} – {high:.4f}"


def baseline_table(metrics: Mapping[str, float], split: str = "test") -> tuple[str, set[str]]:
    """The policy against each baseline: accuracy, 95% Wilson interval and exact McNemar p, on all pairs and on the
    length-balanced subset, and accuracy where the chosen / rejected answer is longer.

    Returns:
        The table with its note (empty without baseline metrics) and the metric names it shows.
    """
    if f"{split}_reference_logprob_accuracy" not in metrics:
        return "", set()
    rows, shown = [], set()
    for system in SYSTEMS:
        row: dict[str, object] = {"system": LABELS[system]}
        for column, prefix in (("", f"{split}_"), ("balanced ", f"{split}_balanced_")):
            name = f"{prefix}{system}_accuracy"
            row[f"{column}accuracy"] = metrics.get(name)
            row[f"{column}95% CI"] = _interval(metrics, name)
            row[f"{column}McNemar p"] = metrics.get(f"{prefix}{system}_mcnemar_p")
            shown |= {name, f"{name}_ci_low", f"{name}_ci_high", f"{prefix}{system}_mcnemar_p"}
        for group in ("chosen_longer", "rejected_longer"):
            row[group.replace("_", " ")] = metrics.get(f"{split}_{group}_{system}_accuracy")
            shown.add(f"{split}_{group}_{system}_accuracy")
        rows.append(row)
    shown.discard(f"{split}_preference_accuracy")  # also the first line of the held-out table
    counts = {name: int(metrics.get(f"{split}_{name}_pairs", 0)) for name in
              ("balanced", "chosen_longer", "rejected_longer", "equal_length")}
    pairs = int(metrics.get(f"{split}_pairs", 0))
    note = (f"<p>The same {pairs} held-out pairs for every row; a tie counts as wrong. McNemar p: exact test "
            "(two-sided binomial on the pairs where exactly one of the two is right) of the policy's per-pair "
            "correctness against the row's. Intervals: 95% Wilson. Balanced: the "
            f"{counts['balanced']} pairs made of the smaller of the two groups below (chosen longer, rejected "
            "longer) and as many of the larger one, evenly spaced in the pairs' order, so the longer answer scores "
            f"0.5 there. Chosen longer: {counts['chosen_longer']} pairs; rejected longer: "
            f"{counts['rejected_longer']}; equal length (in neither group): {counts['equal_length']}. Lengths are "
            "completion tokens.</p>")
    return html_table(rows) + note, shown


def dpo_report(metrics: Mapping[str, float], training_stats: Mapping[str, object],
               log_history: Sequence[Mapping[str, object]]) -> str:
    """The page: held-out metrics, the baselines, training settings and measurements, agreement and loss curves."""
    baselines, shown = baseline_table(metrics)
    sections = [("Held-out pairs", html_table([{"metric": k, "value": v} for k, v in metrics.items()
                                               if k not in shown])
                 + "<p>Implicit reward r = β·(log π(y|x) − log π_ref(y|x)) summed over the completion tokens; a pair "
                   "agrees when r(chosen) &gt; r(rejected).</p>")]
    if baselines:
        sections.append(("Against the baselines (same pairs)", baselines))
    sections.append(("Training", html_table([{"measure": k, "value": v} for k, v in training_stats.items()])))
    curves = agreement_curves(list(log_history))
    if any(curves.values()):
        sections.append(("Preference agreement over training",
                         image_tag(plot_curves(curves, "step", "rewards/accuracies", ylim=(0.0, 1.0)),
                                   "preference agreement over training")))
    loss = {"train loss": [(float(e["step"]), float(e["loss"])) for e in log_history if "loss" in e and "step" in e],
            "eval loss": [(float(e["step"]), float(e["eval_loss"])) for e in log_history
                          if "eval_loss" in e and "step" in e]}
    if any(loss.values()):
        sections.append(("DPO loss", image_tag(plot_curves(loss, "step", "loss"), "DPO loss")))
    return render_report("DPO alignment", sections)
