from typing import Annotated

from zenml import get_step_context, step
from zenml.client import Client
from zenml.enums import ModelStages

from finetune.params import PromotionParams
from finetune.registry import decide_promotion


@step(enable_cache=False)
def promote_generation_model(
    generation_metrics: dict[str, float],
    baseline_metrics: dict[str, float],
    promotion: PromotionParams,
    primary_metric: str = "test_rougeL",
    baseline_prefix: str = "few_shot_",
    other_metrics: dict[str, float] | None = None,
) -> Annotated[dict, "promotion_decision"]:
    """Record the metrics on this run's model version; promote it if ``primary_metric`` (higher is better) beats the
    baseline (the few-shot base model) and the current version in ``promotion.stage``.

    Never cached: the answer depends on which version is in production now, which is outside the inputs.
    """
    if promotion.require_significance:
        raise ValueError("promotion.require_significance: generation metrics have no paired test here; set it false")
    context = get_step_context()
    if context.model_version is None:
        raise ValueError("promote_generation_model needs a model: set `model: name: ...` in the run config")
    metrics = {**(other_metrics or {}), **baseline_metrics, **generation_metrics}
    try:
        current = Client().get_model_version(context.model.name, ModelStages(promotion.stage))
        production, production_version = current.run_metadata.get(primary_metric), current.name
    except KeyError:
        production, production_version = None, None
    decision = decide_promotion(
        metric=primary_metric, candidate=metrics[primary_metric], baseline=metrics[baseline_prefix + primary_metric],
        baseline_significant=False, production=None if production is None else float(production),
        production_version=production_version, params=promotion,
    )
    context.model.log_metadata({**metrics, "promotion": decision.to_dict()})
    if decision.promote:
        context.model.set_stage(ModelStages(decision.stage), force=True)
    elif promotion.stage == "production":  # not good enough for production: keep it reviewable in staging
        context.model.set_stage(ModelStages.STAGING, force=True)
    return decision.to_dict()
