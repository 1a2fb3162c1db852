from typing import Annotated

from zenml import get_step_context, step
from zenml.client import Client
from zenml.enums import ModelStages

from finetune.params import PromotionParams, RankingEvalParams
from finetune.ranking.evaluation import metric_key
from finetune.registry import decide_promotion


@step(enable_cache=False)
def promote_model(
    metrics: dict[str, float], evaluation: RankingEvalParams, promotion: PromotionParams, baseline: str = "bm25"
) -> Annotated[dict, "promotion_decision"]:
    """Record the metrics on this run's model version and promote it if it beats baseline and production.

    Never cached: the answer depends on which version is in production now, which is outside the inputs.
    """
    context = get_step_context()
    if context.model_version is None:
        raise ValueError("promote_model needs a model: set `model: name: ...` in the run config")
    model = context.model
    key = metric_key(evaluation.primary_metric)
    try:
        current = Client().get_model_version(model.name, ModelStages(promotion.stage))
        production, production_version = current.run_metadata.get(key), current.name
    except KeyError:
        production, production_version = None, None
    decision = decide_promotion(
        metric=key,
        candidate=metrics[key],
        baseline=metrics[metric_key(evaluation.primary_metric, baseline)],
        baseline_significant=bool(metrics[f"significant_{key}"]),
        production=None if production is None else float(production),
        production_version=production_version,
        params=promotion,
    )
    model.log_metadata({**metrics, "promotion": decision.to_dict()})
    if decision.promote:
        model.set_stage(ModelStages(decision.stage), force=True)
    elif promotion.stage == "production":  # not good enough for production: keep it reviewable in staging
        model.set_stage(ModelStages.STAGING, force=True)
    return decision.to_dict()
