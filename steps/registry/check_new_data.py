from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.logger import get_logger

from finetune.promotion import data_check
from steps.metadata import record
from steps.registry.model_versions import version_in_stage

logger = get_logger(__name__)


@step(enable_cache=False)
def check_new_data(
    source_fingerprints: dict[str, str], stage: str, force: bool = False
) -> Annotated[dict, "data_check"]:
    """Compare the sources' fingerprints with those recorded on the ``stage`` version (``PromotionParams.stage``);
    decide whether to train.

    With nothing new (and not ``force``) the decision is recorded on this run and as ``last_data_check`` on the
    ``stage`` version. The result also names this run and the model version it opened, which the pipeline then
    deletes when nothing is trained (a step cannot delete the version its own outputs are being linked to).
    Never cached: the answer depends on the registry, which is outside the inputs.
    """
    context = get_step_context()
    if context.model_version is None:
        raise ValueError("check_new_data needs a model: set `model: name: ...` in the run config")
    current = version_in_stage(context.model.name, stage)
    recorded = None if current is None else current.run_metadata.get("data_fingerprints")
    check = data_check(source_fingerprints, recorded, force, None if current is None else current.name, stage=stage)
    logger.info("Data check: %s", check["reason"])
    record({"data_check": check})
    if not check["retrain"]:
        log_metadata({"last_data_check": {**check, "run": context.pipeline_run.name}}, model_version_id=current.id)
    return {**check, "pipeline_run_id": str(context.pipeline_run.id), "model_version_id": str(context.model_version.id)}
