"""promote_model through ``.entrypoint()``: the gate's decision, the stage it sets and what it writes on the version.

The step runs in a stub step context whose model version is real on the throw-away store (tests/steps/registry/
conftest.py), so stages and metadata are read back from the store. Golden paired t-tests (as in
tests/finetune/test_promotion.py): candidate 0.6, 0.7, 0.8 vs production 0.5 each: d = 0.1, 0.2, 0.3, mean 0.2,
sd 0.1, t = 0.2 / (0.1/√3) = 3.4641, df 2 → p = 0.07418; the same three items twice (six items): sd √(0.04/5),
t = 0.2 / (0.08944/√6) = 5.4772, df 5 → p = 0.002765.
"""

import pytest
from zenml import link_artifact_to_model, log_metadata, save_artifact
from zenml.enums import ModelStages

import steps.registry.promote_model as module
from finetune.params import PromotionParams
from steps.registry.promote_model import promote_model

METRIC = "test_ndcg@10"
THREE = {"q1": 0.6, "q2": 0.7, "q3": 0.8}
SIX = {**THREE, "q4": 0.6, "q5": 0.7, "q6": 0.8}
FINGERPRINTS = {"train/qrels": "ab" * 32}


def _production(client, model_name, value, per_item=None, metric=METRIC, name="old"):
    """A production version as an earlier gate left it: the metric's mean and its per-item artifact."""
    version = client.create_model_version(model_name, name)
    log_metadata({metric: value}, model_version_id=version.id)
    if per_item is not None:
        artifact = save_artifact({"metric": metric, "values": per_item}, name=module.PER_ITEM_ARTIFACT)
        link_artifact_to_model(artifact, version.to_model_class())
    version.set_stage(ModelStages.PRODUCTION)
    return version


def _stage(client, version) -> str | None:
    return client.get_model_version(model_version_name_or_number_or_id=version.id).stage


def test_first_version_beating_the_baseline_goes_to_production_with_its_record(step_context, model_name,
                                                                               zenml_client):
    parameters = {"promotion": {"alpha": 0.05}, "evaluation": {"metrics": ["ndcg@10"]}}
    context, recorded = step_context(module, model_name, parameters=parameters)
    metrics = {METRIC: 0.62, "bm25_test_ndcg@10": 0.50, "significant_test_ndcg@10": 1.0}
    parents = {"base_model": {"kind": "tiny_bert", "vocab_size": 300}}
    decision, per_item = promote_model.entrypoint(
        metrics, FINGERPRINTS, PromotionParams(), METRIC, [{"train_seconds": 3, "method": "lora"}],
        baseline_metric="bm25_test_ndcg@10", per_item=THREE, parents=parents)

    assert decision["promote"] and decision["stage"] == "production"
    assert decision["reason"] == "no production version yet; test_ndcg@10 0.6200 beats the baseline 0.5000"
    assert (decision["candidate"], decision["baseline"], decision["production"]) == (0.62, 0.50, None)
    assert per_item == {"metric": METRIC, "values": THREE}
    assert recorded == [{"promotion": decision}]
    assert _stage(zenml_client, context.model_version) == ModelStages.PRODUCTION

    stored = zenml_client.get_model_version(model_version_name_or_number_or_id=context.model_version.id).run_metadata
    assert stored[METRIC] == 0.62 and stored["bm25_test_ndcg@10"] == 0.50
    assert stored["train_seconds"] == 3.0 and "method" not in stored  # only the numbers of other_metrics
    assert stored["data_fingerprints"] == FINGERPRINTS and stored["promotion"] == decision
    assert stored["configuration"] == parameters and stored["parents"] == parents


def test_not_beating_the_baseline_by_min_delta_is_refused_and_kept_in_staging(step_context, model_name,
                                                                              zenml_client):
    """0.504 − 0.500 = 0.004 < min_delta 0.005: refused, and the version stays reviewable in staging."""
    context, recorded = step_context(module, model_name)
    decision, per_item = promote_model.entrypoint(
        {METRIC: 0.504, "bm25_test_ndcg@10": 0.50}, FINGERPRINTS, PromotionParams(min_delta=0.005), METRIC, [],
        baseline_metric="bm25_test_ndcg@10")
    assert not decision["promote"]
    assert decision["reason"] == "test_ndcg@10 0.5040 does not beat the baseline 0.5000 by more than 0.005"
    assert per_item == {"metric": METRIC, "values": {}}
    assert recorded == [{"promotion": decision}]
    assert _stage(zenml_client, context.model_version) == ModelStages.STAGING


def test_a_staging_gate_sets_staging_when_passed_and_nothing_when_refused(step_context, model_name, zenml_client):
    promotion = PromotionParams(stage="staging")
    refused_context, _ = step_context(module, model_name, version="refused")
    refused, _ = promote_model.entrypoint({METRIC: 0.4, "bm25_test_ndcg@10": 0.5}, {}, promotion, METRIC, [],
                                          baseline_metric="bm25_test_ndcg@10")
    assert not refused["promote"] and _stage(zenml_client, refused_context.model_version) is None

    passed_context, _ = step_context(module, model_name, version="passed")
    passed, _ = promote_model.entrypoint({METRIC: 0.6, "bm25_test_ndcg@10": 0.5}, {}, promotion, METRIC, [],
                                         baseline_metric="bm25_test_ndcg@10")
    assert passed["promote"] and passed["stage"] == "staging" and passed["reason"].startswith("no staging version")
    assert _stage(zenml_client, passed_context.model_version) == ModelStages.STAGING


def test_a_significantly_better_candidate_replaces_production_paired_on_the_stored_items(step_context, model_name,
                                                                                          zenml_client):
    """Per-query values come from the ranx comparison of ``candidate_run``; production's from its artifact."""
    old = _production(zenml_client, model_name, 0.5, per_item=dict.fromkeys(SIX, 0.5))
    context, _ = step_context(module, model_name)
    comparison = {"per_query": {"cross_encoder": {"ndcg@10": SIX}, "bm25": {"ndcg@10": dict.fromkeys(SIX, 0.1)}}}
    decision, per_item = promote_model.entrypoint(
        {METRIC: 0.70, "bm25_test_ndcg@10": 0.10}, FINGERPRINTS, PromotionParams(), METRIC, [],
        baseline_metric="bm25_test_ndcg@10", comparison=comparison, candidate_run="cross_encoder")

    assert decision["promote"], decision["reason"]
    assert decision["production_version"] == "old" and decision["production"] == 0.5 and decision["n_items"] == 6
    assert decision["p_value"] == pytest.approx(0.00276496, rel=1e-5)
    assert "0.7000 vs production version old 0.5000 on 6 shared items, paired student p = 0.00276" \
        in decision["reason"]
    assert per_item == {"metric": METRIC, "values": SIX}
    assert _stage(zenml_client, context.model_version) == ModelStages.PRODUCTION
    assert _stage(zenml_client, old) == ModelStages.ARCHIVED


def test_better_on_average_but_not_significant_leaves_production_in_place(step_context, model_name, zenml_client):
    old = _production(zenml_client, model_name, 0.5, per_item=dict.fromkeys(THREE, 0.5))
    context, _ = step_context(module, model_name)
    decision, _ = promote_model.entrypoint({METRIC: 0.70}, {}, PromotionParams(), METRIC, [], per_item=THREE)
    assert not decision["promote"] and decision["n_items"] == 3
    assert decision["p_value"] == pytest.approx(0.0741799, rel=1e-5)
    assert decision["reason"].endswith("better but not significant (alpha 0.05)")
    assert _stage(zenml_client, old) == ModelStages.PRODUCTION
    assert _stage(zenml_client, context.model_version) == ModelStages.STAGING


def test_per_item_values_of_another_metric_are_not_paired_and_the_means_decide(step_context, model_name,
                                                                               zenml_client):
    _production(zenml_client, model_name, 0.5, per_item=dict.fromkeys(SIX, 0.1), metric="test_mrr@10")
    log_metadata({METRIC: 0.5}, model_name=model_name, model_version="old")
    step_context(module, model_name)
    decision, _ = promote_model.entrypoint({METRIC: 0.52}, {}, PromotionParams(), METRIC, [], per_item=SIX)
    assert decision["promote"] and decision["p_value"] is None and decision["n_items"] is None
    assert decision["reason"] == ("test_ndcg@10 0.5200 beats production version old (0.5000) "
                                  "(no per-item values to pair: means compared)")


def test_the_strongest_of_several_baselines_must_be_beaten(step_context, model_name):
    """The untrained starting model (0.65) is harder to beat than BM25 (0.50): 0.60 is refused against it."""
    step_context(module, model_name)
    metrics = {METRIC: 0.60, "bm25_test_ndcg@10": 0.50, "zero_shot_test_ndcg@10": 0.65}
    decision, _ = promote_model.entrypoint(
        metrics, {}, PromotionParams(), METRIC, [], baseline_metric="bm25_test_ndcg@10",
        extra_baselines={"zero_shot_test_ndcg@10": "significant_test_ndcg@10_vs_zero_shot"})
    assert not decision["promote"] and decision["baseline"] == 0.65
    assert decision["reason"] == "test_ndcg@10 0.6000 does not beat the baseline 0.6500 by more than 0.0"


@pytest.mark.parametrize(("flags", "promote", "reason"), [
    ({"significant_test_ndcg@10": 1.0, "significant_test_ndcg@10_vs_zero_shot": 1.0}, True, "beats the baseline"),
    ({"significant_test_ndcg@10": 1.0, "significant_test_ndcg@10_vs_zero_shot": 0.0}, False, "is not significant"),
    ({"significant_test_ndcg@10": 1.0}, False, "was not run"),
])
def test_required_significance_needs_every_baselines_flag(step_context, model_name, flags, promote, reason):
    step_context(module, model_name)
    metrics = {METRIC: 0.80, "bm25_test_ndcg@10": 0.50, "zero_shot_test_ndcg@10": 0.65, **flags}
    decision, _ = promote_model.entrypoint(
        metrics, {}, PromotionParams(require_significance=True), METRIC, [], baseline_metric="bm25_test_ndcg@10",
        extra_baselines={"zero_shot_test_ndcg@10": "significant_test_ndcg@10_vs_zero_shot"})
    assert decision["promote"] is promote and reason in decision["reason"]


def test_required_significance_without_any_baseline_refuses(step_context, model_name, zenml_client):
    """dpo_alignment, an HTTP rag_intent generator: no baseline, so no flags; an empty list is not 'significant'."""
    context, _ = step_context(module, model_name)
    decision, _ = promote_model.entrypoint({"test_rougeL": 0.8}, {}, PromotionParams(require_significance=True),
                                           "test_rougeL", [], per_item=THREE)
    assert not decision["promote"]
    assert decision["reason"] == "test_rougeL 0.8000: require_significance is set, but there is no baseline to " \
                                 "test against"
    assert _stage(zenml_client, context.model_version) == ModelStages.STAGING


@pytest.mark.parametrize(("baseline_items", "promote", "p_value"), [
    ({"q4": 0.5, "q5": 0.5, "q6": 0.5, **dict.fromkeys(THREE, 0.5)}, True, 0.002765),  # six items: significant
    (dict.fromkeys(THREE, 0.5), False, 0.07418),  # three of them: better, not significant
])
def test_generation_baselines_are_tested_on_their_per_item_values(step_context, model_name, zenml_client,
                                                                  baseline_items, promote, p_value):
    """The few-shot baseline's ROUGE-L per example against the candidate's (SIX: 0.6, 0.7, 0.8 twice): the gate runs
    the paired test itself, logs it like a ranking evaluator would, and require_significance reads it."""
    context, _ = step_context(module, model_name)
    candidate = SIX if len(baseline_items) == 6 else THREE
    decision, _ = promote_model.entrypoint(
        {"test_rougeL": 0.7}, {}, PromotionParams(require_significance=True), "test_rougeL",
        [{"few_shot_test_rougeL": 0.5}], baseline_metric="few_shot_test_rougeL", per_item=candidate,
        baseline_per_item=baseline_items)
    assert decision["promote"] is promote
    assert decision["reason"].endswith("beats the baseline 0.5000" if promote else "is not significant")
    stored = zenml_client.get_model_version(model_version_name_or_number_or_id=context.model_version.id).run_metadata
    assert stored["p_value_test_rougeL"] == pytest.approx(p_value, abs=1e-5)
    assert stored["significant_test_rougeL"] == float(promote)


def test_lower_perplexity_beats_the_base_model(step_context, model_name):
    step_context(module, model_name, version="better")
    better, _ = promote_model.entrypoint({"test_perplexity": 12.0}, {}, PromotionParams(), "test_perplexity",
                                         [{"base_test_perplexity": 15.0}], baseline_metric="base_test_perplexity")
    assert better["promote"] and not better["higher_is_better"] and better["baseline"] == 15.0
    assert better["reason"].endswith("test_perplexity 12.0000 beats the baseline 15.0000 (lower is better)")

    step_context(module, model_name, version="worse")
    worse, _ = promote_model.entrypoint({"test_perplexity": 16.0}, {}, PromotionParams(), "test_perplexity",
                                        [{"base_test_perplexity": 15.0}], baseline_metric="base_test_perplexity")
    assert not worse["promote"] and "(lower is better)" in worse["reason"]


def test_a_registered_parent_is_recorded_with_the_version_it_resolves_to(step_context, model_name, zenml_client):
    teacher = f"{model_name}_teacher"
    zenml_client.create_model(teacher)
    zenml_client.create_model_version(teacher, "t1")
    zenml_client.create_model_version(teacher, "t2").set_stage(ModelStages.PRODUCTION)
    context, _ = step_context(module, model_name)
    parents = {"teacher": {"kind": "registered", "name": teacher, "version": "production"},
               "student_base": {"model": "teacher"}}
    promote_model.entrypoint({METRIC: 0.6}, {}, PromotionParams(), METRIC, [], parents=parents)
    stored = zenml_client.get_model_version(model_version_name_or_number_or_id=context.model_version.id)
    recorded_teacher = stored.run_metadata["parents"]["teacher"]
    assert (recorded_teacher["resolved_version"], recorded_teacher["version_number"]) == ("t2", 2)
    assert stored.run_metadata["parents"]["student_base"] == {"model": "teacher"}


def test_a_missing_metric_or_model_fails_with_the_names(step_context, model_name):
    step_context(module, model_name)
    with pytest.raises(ValueError, match=r"primary_metric: bm25_test_ndcg@10 not among the measured metrics "
                                         r"\['test_ndcg@10'\]"):
        promote_model.entrypoint({METRIC: 0.6}, {}, PromotionParams(), METRIC, [],
                                 baseline_metric="bm25_test_ndcg@10")
    step_context(module)
    with pytest.raises(ValueError, match="needs a model: set `model: name: ...`"):
        promote_model.entrypoint({METRIC: 0.6}, {}, PromotionParams(), METRIC, [])
