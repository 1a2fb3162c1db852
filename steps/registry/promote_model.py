from typing import Annotated

from zenml import get_step_context, step
from zenml.enums import ModelStages

from finetune.params import PromotionParams
from finetune.registry import decide_promotion, per_query_values
from steps.metadata import record
from steps.registry.model_versions import (
    PER_ITEM_ARTIFACT,
    resolve_parents,
    run_parameters,
    stored_per_item,
    version_in_stage,
)


@step(enable_cache=False)
def promote_model(
    metrics: dict[str, float],
    source_fingerprints: dict[str, str],
    promotion: PromotionParams,
    primary_metric: str,
    other_metrics: list[dict],
    baseline_metric: str | None = None,
    per_item: dict[str, float] | None = None,
    comparison: dict | None = None,
    candidate_run: str | None = None,
    parents: dict | None = None,
) -> tuple[Annotated[dict, "promotion_decision"], Annotated[dict, PER_ITEM_ARTIFACT]]:
    """Register this run's model version (metrics, data fingerprints, pipeline parameters, parent models) and
    promote it only if ``primary_metric`` beats ``baseline_metric`` and the version in ``promotion.stage``.

    Per-item values (``per_item``, or the per-query values of ``candidate_run`` in a ranx ``comparison``) are
    stored as this version's ``per_item_scores`` artifact, and production's are read back for the paired test.
    Never cached: the answer depends on which version is in production now, which is outside the inputs.
    """
    context = get_step_context()
    if context.model_version is None:
        raise ValueError("promote_model needs a model: set `model: name: ...` in the run config")
    if comparison is not None:
        per_item = per_query_values(comparison, candidate_run or "", primary_metric)
    current = version_in_stage(context.model.name, promotion.stage)
    # other_metrics is a plain list (possibly empty): ZenML cannot take an optional list of artifacts.
    numbers = {k: float(v) for extra in other_metrics for k, v in extra.items() if isinstance(v, int | float)}
    numbers.update(metrics)
    missing = [name for name in (primary_metric, baseline_metric) if name is not None and name not in numbers]
    if missing:
        raise ValueError(f"primary_metric: {', '.join(missing)} not among the measured metrics {sorted(numbers)}")
    significant = numbers.get(f"significant_{primary_metric}")
    decision = decide_promotion(
        primary_metric, numbers[primary_metric], promotion,
        baseline=None if baseline_metric is None else numbers[baseline_metric],
        baseline_significant=None if significant is None else bool(significant),
        production=None if current is None else current.run_metadata.get(primary_metric),
        production_version=None if current is None else current.name,
        candidate_items=per_item, production_items=stored_per_item(current, primary_metric),
    ).to_dict()
    context.model.log_metadata({**numbers, "data_fingerprints": source_fingerprints, "promotion": decision,
                                "configuration": run_parameters(), "parents": resolve_parents(parents)})
    record({"promotion": decision})
    if decision["promote"]:
        context.model.set_stage(ModelStages(decision["stage"]), force=True)
    elif promotion.stage == "production":  # not good enough for production: keep it reviewable in staging
        context.model.set_stage(ModelStages.STAGING, force=True)
    return decision, {"metric": primary_metric, "values": per_item or {}}
