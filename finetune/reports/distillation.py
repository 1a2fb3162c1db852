"""HTML report of causal-LM distillation: teacher vs distilled student vs the student trained without a teacher."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from finetune.reports.common import html_table, image_tag, plot_curves, render_report

TRAINING_KEYS = ("alpha", "temperature", "steps", "train_seconds", "tokens_per_second", "validation_loss",
                 "validation_perplexity", "trainable_parameters")


def _points(log: Sequence[Mapping[str, object]], key: str) -> list[tuple[float, float]]:
    return [(float(e["step"]), float(e[key])) for e in log if key in e and "step" in e]


def distillation_report(rows: Sequence[Mapping[str, object]], student_stats: Mapping[str, object],
                        baseline_stats: Mapping[str, object], student_log: Sequence[Mapping[str, object]],
                        baseline_log: Sequence[Mapping[str, object]]) -> str:
    """The page: held-out comparison table, the two training runs side by side, loss curves.

    Validation losses of both students are plain cross-entropy (the distillation trainer evaluates without the
    teacher), so their curves compare directly; the KL and CE curves show the two parts of the distillation loss.
    """
    training = [{"run": "student (KD)", **{k: student_stats.get(k) for k in TRAINING_KEYS}},
                {"run": "student (no teacher)", **{k: baseline_stats.get(k) for k in TRAINING_KEYS}}]
    sections = [("Held-out comparison", html_table(rows, float_fmt="{:.4g}")
                 + "<p>Perplexity on the test documents packed into disjoint blocks; tokens/s of forward passes "
                   "over the same blocks (no gradients).</p>"),
                ("Training", html_table(training, float_fmt="{:.4g}"))]
    validation = {"student (KD)": _points(student_log, "eval_loss"),
                  "student (no teacher)": _points(baseline_log, "eval_loss")}
    if any(validation.values()):
        sections.append(("Validation cross-entropy", image_tag(plot_curves(validation, "step", "eval loss"),
                                                               "validation loss of both students")))
    parts = {"KL(teacher ‖ student)": _points(student_log, "kd_kl"), "cross-entropy": _points(student_log, "kd_ce")}
    if any(parts.values()):
        sections.append(("Distillation loss terms", image_tag(plot_curves(parts, "step", "value"), "KL and CE terms")))
    return render_report("Language-model distillation", sections)
