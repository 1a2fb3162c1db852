"""Failure hook: a failed run leaves no model version behind.

ZenML creates the run's model version when the run starts; if any step then fails (a malformed file, say),
this hook deletes that version, provided this run created it and it was never staged.
"""

from zenml import get_step_context
from zenml.client import Client
from zenml.logger import get_logger

logger = get_logger(__name__)


def discard_model_version_on_failure() -> None:
    """Delete the failed run's model version if it belongs to this run alone and has no stage."""
    context = get_step_context()
    version = context.model_version
    if version is None:
        return
    client = Client()
    version = client.get_model_version(version.model.id, version.id)
    links = client.list_model_version_pipeline_run_links(model_version_id=version.id, size=50)
    runs = {link.pipeline_run.id for link in links.items}
    if version.stage is None and runs <= {context.pipeline_run.id}:
        client.delete_model_version(version.id)
        logger.info("Deleted model version %s of failed run %s", version.name, context.pipeline_run.name)
