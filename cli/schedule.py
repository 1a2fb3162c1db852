"""Register a scheduled pipeline from a config under configs/schedules/, or say in one line why it cannot be.

ZenML registers a schedule when a run config with ``schedule:`` is run, but only on a stack whose orchestrator is
schedulable (Kubernetes, Airflow, Vertex, SageMaker, AzureML, Kubeflow, Databricks, HyperAI, ...). On the default
local stack ``zenml pipeline run ... -c configs/schedules/<x>.yaml`` ends in a traceback
(``ValueError: Stack default does not support scheduling``), after it has already registered the pipeline. This
entry point checks the config and the active orchestrator first:

    python -m cli.schedule configs/schedules/retraining_nightly.yaml

Dynamic pipelines (``retraining``) are stricter: in ZenML 0.98 only the Kubernetes orchestrator turns their schedule
into a CronJob; Vertex, SageMaker, AzureML, SSH and Modal refuse a scheduled dynamic pipeline, and Airflow,
Kubeflow, Databricks and HyperAI do not run dynamic pipelines at all.

Exit status: 0 when the schedule was registered, 1 when the config is invalid, 2 when the active stack cannot
schedule it (the message names the stack, its orchestrator flavor and the alternatives in
docs/stacks_and_scheduling.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from cli.config_check import pipeline_for, pipelines_by_name, validate_config

SCHEDULABLE_HINT = ("attach a schedulable orchestrator (kubernetes, airflow, vertex, sagemaker, azureml, kubeflow, "
                    "databricks, hyperai) or use the crontab / systemd timer in docs/stacks_and_scheduling.md")
DYNAMIC_SCHEDULE_FLAVORS = ("kubernetes",)


def schedule_blocker(stack, dynamic: bool = False) -> str | None:
    """Why ``stack`` cannot run this schedule (one line), or None when its orchestrator can.

    Args:
        stack: The active ZenML stack.
        dynamic: The pipeline is a dynamic one (``@pipeline(dynamic=True)``).
    """
    orchestrator = stack.orchestrator
    where = f"stack '{stack.name}' uses the '{orchestrator.flavor}' orchestrator '{orchestrator.name}'"
    if not orchestrator.config.is_schedulable:
        return f"{where}, which cannot run schedules: {SCHEDULABLE_HINT}"
    if dynamic and orchestrator.flavor not in DYNAMIC_SCHEDULE_FLAVORS:
        return (f"{where}, which cannot schedule a dynamic pipeline in ZenML 0.98 (the kubernetes orchestrator can, "
                "as a CronJob): use a kubernetes stack or the crontab / systemd timer in docs/stacks_and_scheduling.md")
    return None


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
    pipe = pipeline_for(path, pipelines_by_name())
    blocker = schedule_blocker(Client().active_stack, dynamic=pipe.is_dynamic)
    if blocker:
        return 2, f"{path}: not scheduled: {blocker}"
    pipe.with_options(config_path=str(path))()
    return 0, f"{path}: schedule registered for {pipe.name} on stack '{Client().active_stack.name}'"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m cli.schedule configs/schedules/<pipeline>_<when>.yaml", file=sys.stderr)
        return 1
    status, message = register_schedule(argv[0])
    print(message, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
