"""Register a scheduled pipeline from a config under configs/schedules/, or say in one line why it cannot be.

ZenML registers a schedule when a run config with ``schedule:`` is run, but only on a stack whose orchestrator is
schedulable (Kubernetes, Airflow, Vertex, SageMaker, AzureML, Kubeflow, Databricks, HyperAI, ...). On the default
local stack ``zenml pipeline run ... -c configs/schedules/<x>.yaml`` ends in a traceback
(``ValueError: Stack default does not support scheduling``), after it has already registered the pipeline. This
entry point checks the config and the active orchestrator first:

    python -m pipelines.schedule configs/schedules/retraining_nightly.yaml

Exit status: 0 when the schedule was registered, 1 when the config is invalid, 2 when the active stack cannot
schedule (the message names the stack, its orchestrator flavor and the alternatives in README "Scheduling").
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from pipelines.config_check import pipeline_for, pipelines_by_name, validate_config

SCHEDULABLE_HINT = ("attach a schedulable orchestrator (kubernetes, airflow, vertex, sagemaker, azureml, kubeflow, "
                    "databricks, hyperai) or use the crontab / systemd timer in README 'Scheduling'")


def schedule_blocker(stack) -> str | None:
    """Why ``stack`` cannot run schedules (one line), or None when its orchestrator can."""
    orchestrator = stack.orchestrator
    if orchestrator.config.is_schedulable:
        return None
    return (f"stack '{stack.name}' uses the '{orchestrator.flavor}' orchestrator '{orchestrator.name}', which cannot "
            f"run schedules: {SCHEDULABLE_HINT}")


def register_schedule(path: str | Path) -> tuple[int, str]:
    """Validate ``path``, check the active stack, then run the pipeline with the config (which registers it).

    Returns:
        (exit status, one-line message).
    """
    from zenml.client import Client

    path = Path(path)
    problems = validate_config(path)
    if not problems and not (yaml.safe_load(path.read_text()) or {}).get("schedule"):
        problems = [f"{path}: schedule: missing; this entry point only registers scheduled runs"]
    if problems:
        return 1, "; ".join(problems)
    blocker = schedule_blocker(Client().active_stack)
    if blocker:
        return 2, f"{path}: not scheduled: {blocker}"
    pipe = pipeline_for(path, pipelines_by_name())
    pipe.with_options(config_path=str(path))()
    return 0, f"{path}: schedule registered for {pipe.name} on stack '{Client().active_stack.name}'"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pipelines.schedule configs/schedules/<pipeline>_<when>.yaml", file=sys.stderr)
        return 1
    status, message = register_schedule(argv[0])
    print(message, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
