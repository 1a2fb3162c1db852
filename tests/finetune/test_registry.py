from finetune.params import PromotionParams
from finetune.registry import decide_promotion


def _decide(candidate, baseline=0.50, production=None, significant=True, **params):
    return decide_promotion("test_ndcg@10", candidate, baseline, significant, production,
                            None if production is None else "3", PromotionParams(**params))


def test_first_version_beating_baseline_is_promoted():
    decision = _decide(0.62)
    assert decision.promote and decision.stage == "production" and "no production version" in decision.reason


def test_not_beating_the_baseline_is_refused():
    assert not _decide(0.50).promote
    assert not _decide(0.49).promote


def test_must_beat_production_by_min_delta():
    # 0.705 - 0.700 = 0.005 < 0.01 → refused; 0.72 - 0.70 = 0.02 ≥ 0.01 → promoted.
    assert not _decide(0.705, production=0.70, min_delta=0.01).promote
    decision = _decide(0.72, production=0.70, min_delta=0.01)
    assert decision.promote and "version 3 (0.7000)" in decision.reason


def test_equal_to_production_is_refused():
    decision = _decide(0.70, production=0.70)
    assert not decision.promote and "does not beat production" in decision.reason


def test_significance_can_be_required():
    assert not _decide(0.62, significant=False, require_significance=True).promote
    assert _decide(0.62, significant=False).promote
