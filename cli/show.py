"""Print the key results of a pipeline's latest run: ``python -m cli.show <pipeline name>``.

Ranking runs (a ``metrics`` artifact with p-values) print baseline vs candidate with the paired test; other runs
print every ``*metrics`` artifact of the run as name/value lines. Both end with the promotion decision, if the
pipeline has one, and the steps whose ``report`` artifact holds the HTML report.
"""

from __future__ import annotations

import numbers
import sys

from zenml.client import Client

FIRST_STAGE = ("bm25_", "source_run_")
STARTING_POINT = "zero_shot"  # finetune.ranking.evaluation.STARTING_POINT (this CLI imports no torch code)


def _ranking_table(metrics: dict) -> list[str]:
    """baseline (first stage) vs candidate with its p-value; with a starting-point evaluation also the untrained
    model (``zero-shot``) and the candidate's p-value against it, and with score fusion the reranker alone."""
    names = sorted(k for k in metrics if k.startswith("test_"))
    width = max(len(n) for n in names)
    start = any(k.startswith(f"{STARTING_POINT}_test_") for k in metrics)
    alone = any(k.startswith("cross_encoder_test_") for k in metrics)
    teacher = any(k.endswith("_vs_teacher") for k in metrics)
    header = f"{'metric':<{width}}  {'baseline':>9}  {'reranker':>9}  {'p-value':>8}"
    header += f"  {'zero-shot':>9}  {'p vs z-s':>8}" if start else ""
    header += f"  {'teacher':>9}  {'p vs t':>8}" if teacher else ""
    header += f"  {'unfused':>9}" if alone else ""
    lines = [header]
    for name in names:
        others = [k for k in metrics if k.endswith("_" + name) and not k.startswith(("p_", "sig"))]
        # The first-stage run is the baseline; distillation runs also log teacher_ and student_teacher_ratio_ keys.
        baseline = metrics[next((k for k in others if k.startswith(FIRST_STAGE)), others[0])]
        line = f"{name:<{width}}  {baseline:>9.4f}  {metrics[name]:>9.4f}  {metrics['p_value_' + name]:>8.3g}"
        if start:
            line += (f"  {metrics[f'{STARTING_POINT}_{name}']:>9.4f}"
                     f"  {metrics[f'p_value_{name}_vs_{STARTING_POINT}']:>8.3g}")
        if teacher:
            line += f"  {metrics[f'teacher_{name}']:>9.4f}  {metrics[f'p_value_{name}_vs_teacher']:>8.3g}"
        if alone:
            line += f"  {metrics['cross_encoder_' + name]:>9.4f}"
        lines.append(line)
    return lines


def _metric_lines(artifact: str, metrics: dict) -> list[str]:
    values = {k: v for k, v in metrics.items() if isinstance(v, numbers.Number)}
    width = max((len(k) for k in values), default=0)
    return [f"{artifact}:"] + [f"  {k:<{width}}  {v:.4f}" for k, v in sorted(values.items())]


def summary(pipeline_name: str) -> str:
    """Metrics of the latest run, the promotion decision and where the report is."""
    run = Client().get_pipeline(pipeline_name).last_run
    lines = [f"Run {run.name} ({run.status}) of {pipeline_name}", ""]
    outputs = {name: artifacts[0] for step in run.steps.values() for name, artifacts in step.outputs.items()}
    metrics = outputs.get("metrics")
    if metrics is not None and any(k.startswith("p_value_") for k in metrics.load()):
        lines += _ranking_table(metrics.load())
    else:
        for name in sorted(n for n in outputs if n.endswith("metrics")):
            lines += _metric_lines(name, outputs[name].load())
    if "promotion_decision" in outputs:
        decision = outputs["promotion_decision"].load()
        lines += ["", f"Promotion: {'promoted to ' + decision['stage'] if decision['promote'] else 'not promoted'}"
                      f" — {decision['reason']}"]
    reports = sorted(name for name, step in run.steps.items() if "report" in step.outputs)
    if reports:
        lines.append(f"Report: artifact 'report' of step {', '.join(reports)} (zenml login --local to open the "
                     "dashboard)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1] if len(sys.argv) > 1 else "cross_encoder_training"))
