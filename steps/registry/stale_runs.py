"""Runs whose process died: marked failed, their model versions deleted (not steps themselves).

A run killed with SIGKILL (or by the out-of-memory killer, or a lost machine) never runs its failure hook: it stays
``running`` forever and the model version ZenML created for it stays registered with no stage. To tell such a run
from one that is still going, the first step of every run (the never-cached ``fingerprint_*`` step) takes an
exclusive ``fcntl`` lock on ``<ZenML config dir>/run_locks/<run id>.lock`` and holds it for the life of the process.
The kernel releases the lock when the process dies, however it dies; so a ``running`` run whose lock can be taken
by someone else has no live owner. Pid files could not tell a dead owner from a reused pid; locks can.

``claim_run`` also sweeps: every run of the same pipeline that is still ``running`` / ``initializing`` with a free
lock is marked failed (its unfinished steps too) and its model version deleted when it has no stage and belongs to
that run alone. ``python -m cli.cleanup`` runs the same sweep over every pipeline. Runs started on another
machine (a remote orchestrator) leave no lock file here and are never touched.
"""

from __future__ import annotations

import fcntl
import os
from datetime import datetime, timezone
from pathlib import Path
from uuid import UUID

from zenml.client import Client
from zenml.config.global_config import GlobalConfiguration
from zenml.enums import ExecutionStatus
from zenml.logger import get_logger
from zenml.models import PipelineRunUpdate, StepRunUpdate

from steps.registry.model_versions import discard_version

logger = get_logger(__name__)

UNFINISHED = (ExecutionStatus.INITIALIZING, ExecutionStatus.RUNNING)
# Locks this process holds, by run id: the open file keeps the lock until the process exits.
_held: dict[str, int] = {}


def lock_dir() -> Path:
    """Where run locks live: beside the ZenML store this process uses."""
    return Path(GlobalConfiguration().config_directory) / "run_locks"


def claim_run(run_id: UUID | str, pipeline_name: str) -> list[str]:
    """Lock ``run_id`` for this process, then fail the dead runs of ``pipeline_name``; returns their names."""
    key = str(run_id)
    if key not in _held:
        path = lock_dir() / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh run id: nobody else can hold it
        _held[key] = fd
    return fail_dead_runs(pipeline_name)


def _owner_is_dead(run_id: str) -> bool:
    """True when the run has a lock file here and no live process holds its lock."""
    path = lock_dir() / f"{run_id}.lock"
    if run_id in _held or not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing releases the probe's lock again
    return True


def fail_dead_runs(pipeline_name: str | None = None) -> list[str]:
    """Mark failed every unfinished run (of ``pipeline_name``, or of any pipeline) whose owner process died.

    Each one's unfinished steps are marked failed too, its model version is deleted if it has no stage and no other
    run is linked to it, and its lock file is removed. Returns the names of the runs failed.
    """
    client = Client()
    failed = []
    for status in UNFINISHED:
        filters = {"status": status, "size": 100}
        if pipeline_name is not None:
            filters["pipeline"] = pipeline_name
        for run in client.list_pipeline_runs(**filters).items:
            if not _owner_is_dead(str(run.id)):
                continue
            now = datetime.now(timezone.utc)
            for step in run.steps.values():
                if step.status in UNFINISHED:
                    client.zen_store.update_run_step(step.id, StepRunUpdate(status=ExecutionStatus.FAILED,
                                                                            end_time=now))
            client.zen_store.update_run(run.id, PipelineRunUpdate(
                status=ExecutionStatus.FAILED, status_reason="its process died (found by the next run's sweep)"))
            version = run.model_version
            if version is not None and discard_version(version.id, run.id):
                logger.warning("Deleted model version %s of dead run %s", version.name, run.name)
            (lock_dir() / f"{run.id}.lock").unlink(missing_ok=True)
            logger.warning("Marked run %s failed: its process died without finishing", run.name)
            failed.append(run.name)
    return failed


def claim_this_run() -> None:
    """``claim_run`` for the running step's run; called first by every pipeline's never-cached first step.

    Outside a run (a step called directly in a test) there is nothing to claim.
    """
    from zenml.steps.step_context import StepContext

    context = StepContext.get()
    if context is not None:
        run = context.pipeline_run
        claim_run(run.id, run.pipeline.name if run.pipeline else context.pipeline.name)
