from typing import Annotated

from zenml import get_step_context, step
from zenml.enums import ModelStages

from finetune.params import PromotionParams
from finetune.promotion import baseline_significance, decide_promotion, per_query_values, strongest_baseline
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
    extra_baselines: dict[str, str] | None = None,
    per_item: dict[str, float] | None = None,
    baseline_per_item: dict[str, float] | None = None,
    comparison: dict | None = None,
    candidate_run: str | None = None,
    parents: dict | None = None,
) -> tuple[Annotated[dict, "promotion_decision"], Annotated[dict, PER_ITEM_ARTIFACT]]:
    """Register this run's model version (metrics, data fingerprints, pipeline parameters, parent models) and
    promote it only if ``primary_metric`` beats ``baseline_metric`` and the version in ``promotion.stage``.
    ``extra_baselines`` (metric -> its significance flag) must be beaten as well, e.g. the untrained starting
    model's ``zero_shot_test_ndcg@10`` with ``significant_test_ndcg@10_vs_zero_shot``.

    ``promotion.require_significance`` reads each baseline's flag: ranking evaluators log them; with
    ``baseline_per_item`` (the baseline's values on the same items as ``per_item``) this step runs the paired test
    against ``baseline_metric`` itself and logs ``p_value_<metric>`` and ``significant_<metric>``. Without any
    baseline, or without a flag, the setting refuses promotion and the reason says why.

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
    if baseline_metric is not None and per_item is not None and baseline_per_item is not None:
        numbers.update(baseline_significance(primary_metric, per_item, baseline_per_item, promotion))
    baselines = {} if baseline_metric is None else {baseline_metric: f"significant_{primary_metric}"}
    baselines.update(extra_baselines or {})
    missing = [name for name in (primary_metric, *baselines) if name not in numbers]
    if missing:
        raise ValueError(f"primary_metric: {', '.join(missing)} not among the measured metrics {sorted(numbers)}")
    strongest = strongest_baseline(primary_metric, {name: numbers[name] for name in baselines})
    flags = [numbers.get(flag) for flag in baselines.values()]
    decision = decide_promotion(
        primary_metric, numbers[primary_metric], promotion,
        baseline=None if strongest is None else numbers[strongest],
        baseline_significant=None if not flags or None in flags else all(bool(flag) for flag in flags),
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
