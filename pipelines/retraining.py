"""Retraining: train again only when the data changed since the production version was trained.

A dynamic pipeline (ZenML's ``@pipeline(dynamic=True)``): the steps run as the function reaches them, so the
run's DAG in the dashboard shows exactly what happened, either ``fingerprint_sources → check_new_data`` and
nothing else ("no new data", recorded on the run and on the production version), or the whole training family
through the promotion gate.
"""

from typing import Literal

from zenml import pipeline
from zenml.enums import ExecutionMode
from zenml.logger import get_logger

from finetune.params import (
    CrossEncoderParams,
    DenseEvalParams,
    DualEncoderTrainingParams,
    MiningParams,
    PromotionParams,
    RankingDataParams,
    RankingEvalParams,
    RetrievalParams,
)
from pipelines.ranking import cross_encoder_steps, dual_encoder_steps
from steps.data.fingerprint_sources import fingerprint_sources
from steps.registry.check_new_data import check_new_data
from steps.registry.hooks import discard_model_version_on_failure
from steps.registry.model_versions import discard_version

logger = get_logger(__name__)


@pipeline(dynamic=True, on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def retraining(
    data: RankingDataParams,
    family: Literal["cross_encoder_training", "dual_encoder_training"] = "cross_encoder_training",
    force: bool = False,
    retrieval: RetrievalParams = RetrievalParams(),
    mining: MiningParams = MiningParams(),
    cross_encoder: CrossEncoderParams = CrossEncoderParams(),
    dual_encoder: DualEncoderTrainingParams = DualEncoderTrainingParams(),
    dense: DenseEvalParams = DenseEvalParams(),
    evaluation: RankingEvalParams = RankingEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """Fingerprints vs the production version's → stop ("no new data") or train ``family`` → evaluate → gate.

    ``force`` trains even when nothing changed. ``family`` picks the training pipeline whose steps run (the
    cross-encoder reranker or the dual encoder); its parameters are the ones that pipeline takes.
    """
    fingerprints = fingerprint_sources(data)
    check = check_new_data(fingerprints, promotion.stage, force).load()
    if not check["retrain"]:
        logger.info("retraining: %s", check["reason"])
        discard_version(check["model_version_id"], check["pipeline_run_id"])  # nothing trained: no empty version
        return
    if family == "cross_encoder_training":
        cross_encoder_steps(fingerprints, data, retrieval, mining, cross_encoder, evaluation, promotion)
    else:
        dual_encoder_steps(fingerprints, data, retrieval, mining, dual_encoder, dense, evaluation, promotion)
