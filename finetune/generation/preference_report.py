"""HTML report of DPO alignment: held-out preference metrics and the preference agreement logged during training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from finetune.generation.preference import agreement_curves
from finetune.reports import _img, html_table, plot_curves, render_report


def dpo_report(metrics: Mapping[str, float], training_stats: Mapping[str, object],
               log_history: Sequence[Mapping[str, object]]) -> str:
    """The page: held-out metrics, training settings and measurements, agreement and loss curves."""
    sections = [("Held-out pairs", html_table([{"metric": k, "value": v} for k, v in metrics.items()])
                 + "<p>Implicit reward r = β·(log π(y|x) − log π_ref(y|x)) summed over the completion tokens; a pair "
                   "agrees when r(chosen) &gt; r(rejected).</p>"),
                ("Training", html_table([{"measure": k, "value": v} for k, v in training_stats.items()]))]
    curves = agreement_curves(list(log_history))
    if any(curves.values()):
        sections.append(("Preference agreement over training",
                         _img(plot_curves(curves, "step", "rewards/accuracies", ylim=(0.0, 1.0)),
                              "preference agreement over training")))
    loss = {"train loss": [(float(e["step"]), float(e["loss"])) for e in log_history if "loss" in e and "step" in e],
            "eval loss": [(float(e["step"]), float(e["eval_loss"])) for e in log_history
                          if "eval_loss" in e and "step" in e]}
    if any(loss.values()):
        sections.append(("DPO loss", _img(plot_curves(loss, "step", "loss"), "DPO loss")))
    return render_report("DPO alignment", sections)
