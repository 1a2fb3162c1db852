import math

import pytest

from finetune.params import PromotionParams
from finetune.promotion import (
    baseline_significance,
    best_method,
    compare_paired,
    data_check,
    decide_promotion,
    higher_is_better,
    paired_difference,
    parent_specs,
    per_query_values,
)

# Golden paired t-tests (scipy.stats.ttest_rel), worked by hand:
# candidate 0.6, 0.7, 0.8 vs production 0.5 × 3: d = 0.1, 0.2, 0.3, mean 0.2, sd 0.1, se 0.1/√3 = 0.05774,
#   t = 3.4641, df 2 → p = 0.07418 (better on average, not significant at 0.05).
# the same three items twice (six items): mean 0.2, sd √(0.04/5) = 0.08944, se 0.08944/√6 = 0.03651,
#   t = 5.4772, df 5 → p = 0.002765 (significant).
# perplexity 20, 21, 22 vs 22, 24, 26: d = −2, −3, −4, mean −3, sd 1, se 0.5774, t = −5.1962, df 2 → p = 0.03510.
THREE = {"q1": 0.6, "q2": 0.7, "q3": 0.8}
SIX = {**THREE, "q4": 0.6, "q5": 0.7, "q6": 0.8}


def _decide(candidate, baseline=0.50, production=None, significant=True, cand_items=None, prod_items=None,
            metric="test_ndcg@10", **params):
    return decide_promotion(metric, candidate, PromotionParams(**params), baseline=baseline,
                            baseline_significant=significant, production=production,
                            production_version=None if production is None else "3",
                            candidate_items=cand_items, production_items=prod_items)


def test_first_version_beating_baseline_is_promoted():
    decision = _decide(0.62)
    assert decision.promote and decision.stage == "production"
    assert decision.reason == "no production version yet; test_ndcg@10 0.6200 beats the baseline 0.5000"


def test_production_without_the_metric_is_named_and_does_not_block():
    decision = decide_promotion("test_ndcg@10", 0.62, PromotionParams(), baseline=0.5, production_version="2")
    assert decision.promote and decision.reason.startswith("production version 2 has no test_ndcg@10 to compare")


def test_not_beating_the_baseline_is_refused():
    assert not _decide(0.50).promote
    assert not _decide(0.49).promote


def test_means_only_must_beat_production_by_min_delta():
    # 0.705 - 0.700 = 0.005 < 0.01 → refused; 0.72 - 0.70 = 0.02 ≥ 0.01 → promoted.
    refused = _decide(0.705, production=0.70, min_delta=0.01)
    assert not refused.promote and "means compared" in refused.reason and refused.p_value is None
    decision = _decide(0.72, production=0.70, min_delta=0.01)
    assert decision.promote and "version 3 (0.7000)" in decision.reason


def test_equal_to_production_is_refused():
    decision = _decide(0.70, production=0.70)
    assert not decision.promote and "does not beat production version 3" in decision.reason


def test_significance_against_the_baseline_can_be_required():
    assert not _decide(0.62, significant=False, require_significance=True).promote
    assert "was not run" in _decide(0.62, significant=None, require_significance=True).reason
    assert _decide(0.62, significant=False).promote


def test_required_significance_without_a_baseline_refuses_and_says_so():
    """An empty set of baselines is not 'every baseline's test is significant'."""
    decision = _decide(0.62, baseline=None, significant=None, require_significance=True)
    assert not decision.promote
    assert decision.reason == "test_ndcg@10 0.6200: require_significance is set, but there is no baseline to test " \
                              "against"
    assert _decide(0.62, baseline=None, significant=None).promote  # the setting off: no baseline is fine
    assert _decide(0.62, significant=None, require_significance=True).reason == (
        "test_ndcg@10 0.6200: the paired test against the baseline was not run (no significance flag or per-item "
        "values of the baseline to pair)")


def test_baseline_significance_is_the_paired_test_in_the_metrics_direction():
    """ROUGE-L 0.6, 0.7, 0.8 vs the baseline 0.5 × 6 items: p = 0.002765 < 0.05 → significant; on three items
    p = 0.07418 → not; perplexity 20, 21, 22 vs 22, 24, 26: lower, p = 0.03510 → significant; the same values the
    other way round (the candidate worse) are never significant; one shared item: no test."""
    params = PromotionParams()
    six = baseline_significance("test_rougeL", SIX, dict.fromkeys(SIX, 0.5), params)
    assert six == {"p_value_test_rougeL": pytest.approx(0.002765, abs=1e-6), "significant_test_rougeL": 1.0}
    three = baseline_significance("test_rougeL", THREE, dict.fromkeys(THREE, 0.5), params)
    assert three == {"p_value_test_rougeL": pytest.approx(0.07418, abs=1e-5), "significant_test_rougeL": 0.0}
    low, high = {"a": 20.0, "b": 21.0, "c": 22.0}, {"a": 22.0, "b": 24.0, "c": 26.0}
    assert baseline_significance("test_perplexity", low, high, params)["significant_test_perplexity"] == 1.0
    worse = baseline_significance("test_perplexity", high, low, params)
    assert worse["p_value_test_perplexity"] == pytest.approx(0.03510, abs=1e-5)
    assert worse["significant_test_perplexity"] == 0.0
    assert baseline_significance("test_rougeL", {"a": 0.9}, {"a": 0.1, "b": 0.2}, params) == {}


def test_compare_paired_golden_values_on_shared_items_only():
    production = {"q1": 0.5, "q2": 0.5, "q3": 0.5, "unjudged_by_candidate": 0.9}
    paired = compare_paired({**THREE, "new_query": 0.0}, production)
    assert paired.n_items == 3
    assert paired.candidate_mean == pytest.approx(0.7) and paired.production_mean == pytest.approx(0.5)
    assert paired.p_value == pytest.approx(0.0741799, rel=1e-5)
    assert compare_paired({"q1": 1.0}, {"q1": 0.0}) is None  # one shared item: nothing to test


def test_clearly_better_is_promoted_with_p_value_and_n_items():
    decision = _decide(0.70, production=0.50, cand_items=SIX, prod_items=dict.fromkeys(SIX, 0.5))
    assert decision.promote and decision.n_items == 6
    assert decision.p_value == pytest.approx(0.00276496, rel=1e-5)
    assert "on 6 shared items, paired student p = 0.00276" in decision.reason


def test_insignificantly_better_stays():
    decision = _decide(0.70, production=0.50, cand_items=THREE, prod_items=dict.fromkeys(THREE, 0.5))
    assert not decision.promote and decision.p_value == pytest.approx(0.0741799, rel=1e-5)
    assert "not significant (alpha 0.05)" in decision.reason
    # The same numbers pass a looser alpha: the threshold comes from the config.
    assert _decide(0.70, production=0.50, cand_items=THREE, prod_items=dict.fromkeys(THREE, 0.5), alpha=0.1).promote


def test_identical_items_stay_with_p_one():
    decision = _decide(0.70, production=0.70, cand_items=THREE, prod_items=THREE)
    assert not decision.promote and decision.p_value == 1.0 and "not better" in decision.reason


def test_lower_is_better_for_perplexity():
    assert not higher_is_better("test_perplexity") and not higher_is_better("test_nll")
    assert higher_is_better("test_rougeL") and higher_is_better("test_ndcg@10")
    better = _decide(21.0, baseline=40.0, production=24.0, metric="test_perplexity",
                     cand_items={"d1": 20.0, "d2": 21.0, "d3": 22.0}, prod_items={"d1": 22.0, "d2": 24.0, "d3": 26.0})
    assert better.promote and better.p_value == pytest.approx(0.0350987, rel=1e-5) and not better.higher_is_better
    # Higher perplexity than the base model: refused before production is even looked at.
    assert not _decide(41.0, baseline=40.0, metric="test_perplexity").promote
    # No baseline (e.g. DPO): the first version is promoted on its own.
    assert _decide(0.6, baseline=None).promote


def test_per_query_values_from_a_comparison_dict():
    comparison = {"per_query": {"bm25": {"ndcg@10": {"1": 0.2}}, "cross_encoder": {"ndcg@10": {"1": 0.5, 2: 1.0}}}}
    assert per_query_values(comparison, "cross_encoder", "test_ndcg@10") == {"1": 0.5, "2": 1.0}
    with pytest.raises(ValueError, match="no per-query mrr@10 for run 'cross_encoder'"):
        per_query_values(comparison, "cross_encoder", "test_mrr@10")


def test_best_method_follows_the_metric_direction():
    rows = [{"method": "lora", "test_rougeL": 0.4, "test_perplexity": 9.0},
            {"method": "full", "test_rougeL": 0.5, "test_perplexity": 11.0}]
    name, metrics = best_method(rows, "test_rougeL")
    assert name == "full" and metrics["test_rougeL"] == 0.5 and metrics["lora_test_rougeL"] == 0.4
    assert best_method(rows, "test_perplexity")[0] == "lora"
    with pytest.raises(ValueError, match="no method has test_bleu"):
        best_method(rows, "test_bleu")


def test_parent_specs_are_json_with_plain_values_wrapped_and_none_dropped():
    from finetune.params import RegisteredModel

    specs = parent_specs({"teacher": RegisteredModel(name="reranker"), "student_base": "teacher", "reference": None})
    assert specs == {"teacher": {"kind": "registered", "name": "reranker", "version": "production"},
                     "student_base": {"model": "teacher"}}


def test_data_check_compares_fingerprints_with_production():
    recorded = {"a.tsv": "111", "b.tsv": "222"}
    same = data_check(dict(recorded), recorded, version="4", stage="production")
    assert not same["retrain"] and same["reason"].startswith("no new data since production version 4 (all 2 files")
    assert data_check(dict(recorded), recorded, force=True, version="4", stage="production")["retrain"]
    edited = data_check({"a.tsv": "111", "b.tsv": "999", "c.tsv": "333"}, recorded, version="4", stage="production")
    assert edited["retrain"] and edited["changed"] == ["b.tsv"] and edited["added"] == ["c.tsv"]
    assert "(1 changed, 1 added of 3 files)" in edited["reason"]
    assert data_check(recorded, None, version=None, stage="production")["reason"] == \
        "no production version yet: training"
    assert data_check(recorded, None, version="2", stage="production")["retrain"]  # predates fingerprint records


def test_data_check_names_the_stage_it_was_asked_about():
    recorded = {"a.tsv": "111"}
    assert data_check(recorded, recorded, version="7", stage="staging")["reason"] == \
        "no new data since staging version 7 (all 1 files have the same sha256): nothing to train"
    assert data_check(recorded, recorded, force=True, version="7", stage="staging")["reason"] == \
        "no new data since staging version 7, but force is set: training"
    assert data_check({"a.tsv": "999"}, recorded, version="7", stage="staging")["reason"] == \
        "new data since staging version 7 (1 changed of 1 files): training"
    assert data_check(recorded, None, version="7", stage="staging")["reason"] == \
        "staging version 7 has no data fingerprints: training"
    assert data_check(recorded, None, stage="staging")["reason"] == "no staging version yet: training"


def test_paired_difference_is_the_mean_difference_with_its_t_interval_and_p():
    """Differences 0.4, 0.3, 0.5: mean 0.4, se 0.1/√3, t(0.975, 2) = 4.3027 → [0.1516, 0.6484], p = 0.0202; only
    shared items are paired; as logs, perplexities 20 vs 10 and 10 vs 40 differ by ln 2 and −ln 4."""
    out = paired_difference({"a": 0.5, "b": 0.6, "c": 0.7, "x": 9.0}, {"a": 0.1, "b": 0.3, "c": 0.2, "y": 0.0}, "d")
    assert out == pytest.approx({"d": 0.4, "d_ci_low": 0.15159, "d_ci_high": 0.64841, "d_p": 0.020204, "d_n": 3.0},
                                abs=1e-5)
    logs = paired_difference({"w1": 20.0, "w2": 10.0}, {"w1": 10.0, "w2": 40.0}, "nll", log=True)
    assert logs["nll"] == pytest.approx((math.log(2) - math.log(4)) / 2) and logs["nll_n"] == 2
    same = paired_difference({"a": 1.0, "b": 2.0}, {"a": 0.5, "b": 1.5}, "d")  # constant difference: no spread
    assert same["d"] == same["d_ci_low"] == same["d_ci_high"] == pytest.approx(0.5)
    assert paired_difference({"a": 1.0}, {"a": 0.5}, "d") == {}  # one shared item: nothing to pair


def test_best_method_never_chooses_the_untuned_baseline_row():
    rows = [{"method": "untuned", "test_rougeL": 0.9}, {"method": "lora", "test_rougeL": 0.3}]
    name, metrics = best_method(rows, "test_rougeL")
    assert name == "lora" and metrics["untuned_test_rougeL"] == 0.9 and metrics["test_rougeL"] == 0.3
    with pytest.raises(ValueError, match="no method has test_rougeL"):
        best_method(rows[:1], "test_rougeL")
