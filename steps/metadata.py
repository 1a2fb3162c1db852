"""Metadata logging that works inside a pipeline run and degrades to the Python log outside one.

Steps are also called directly (``step.entrypoint(...)``) in tests and notebooks, where there is no run to
attach metadata to; there the values go to the ``steps`` logger instead of raising.
"""

import logging

from zenml import log_metadata
from zenml.steps.step_context import StepContext

logger = logging.getLogger("steps")


def record(metadata: dict) -> None:
    """Attach ``metadata`` to the running step (and so to its run); log it when no step is running."""
    if StepContext.get() is None:
        logger.info("metadata (no step running): %s", metadata)
        return
    log_metadata(metadata=metadata)
