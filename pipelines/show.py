"""Print the key results of a pipeline's latest run: ``python -m pipelines.show cross_encoder_training``."""

from __future__ import annotations

import sys

from zenml.client import Client


def summary(pipeline_name: str) -> str:
    """Metrics of the latest run (baseline vs candidate), the promotion decision and where the report is."""
    run = Client().get_pipeline(pipeline_name).last_run
    evaluator = next(step for step in run.steps.values() if "metrics" in step.outputs)  # evaluate_reranker, ...
    metrics = evaluator.outputs["metrics"][0].load()
    decision = run.steps["promote_model"].outputs["promotion_decision"][0].load()
    names = sorted(k for k in metrics if k.startswith("test_"))
    width = max(len(n) for n in names)
    lines = [f"Run {run.name} ({run.status}) of {pipeline_name}", "",
             f"{'metric':<{width}}  {'baseline':>9}  {'reranker':>9}  {'p-value':>8}"]
    for name in names:
        baseline = next(v for k, v in metrics.items() if k.endswith("_" + name) and not k.startswith(("p_", "sig")))
        lines.append(f"{name:<{width}}  {baseline:>9.4f}  {metrics[name]:>9.4f}  {metrics['p_value_' + name]:>8.3g}")
    lines += ["", f"Promotion: {'promoted to ' + decision['stage'] if decision['promote'] else 'not promoted'}"
              f" — {decision['reason']}",
              "Report: artifact 'report' of step build_ranking_report (zenml login --local to open the dashboard)"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1] if len(sys.argv) > 1 else "cross_encoder_training"))
