"""Failure hook: a failed run leaves no model version behind.

ZenML creates the run's model version when the run starts; if any step then fails (a malformed file, say),
this hook deletes that version, provided this run created it and it was never staged. Static pipelines call it
in the failed step; dynamic ones (``retraining``) once for the run, outside any step.

Every pipeline with this hook runs with ``execution_mode=ExecutionMode.FAIL_FAST``. ZenML's default
(``CONTINUE_ON_FAILURE``) goes on running the other branches after a step failed, and those steps then link
their artifacts to the version this hook has just deleted: the user saw ``sqlite3.IntegrityError: FOREIGN KEY
constraint failed`` from every sibling instead of the one real error. Fail-fast stops the run at the first
failure and re-raises that step's own exception.
"""

from zenml.client import Client
from zenml.execution.pipeline.dynamic.run_context import DynamicPipelineRunContext
from zenml.logger import get_logger
from zenml.steps.step_context import StepContext

from steps.registry.model_versions import discard_version

logger = get_logger(__name__)


def discard_model_version_on_failure() -> None:
    """Delete the failed run's model version if it belongs to this run alone and has no stage."""
    step_context = StepContext.get()
    if step_context is not None:
        run, version = step_context.pipeline_run, step_context.model_version
    else:
        run_context = DynamicPipelineRunContext.get()
        if run_context is None:
            logger.warning("discard_model_version_on_failure: neither a step nor a dynamic pipeline run is active")
            return
        run = Client().get_pipeline_run(run_context.run.id)
        version = run.model_version
    if version is not None and discard_version(version.id, run.id):
        logger.info("Deleted model version %s of failed run %s", version.name, run.name)
