"""The promotion gate, free of ZenML: given the candidate's and production's metrics, promote or not, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from finetune.params import PromotionParams


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of the gate.

    Attributes:
        promote: Whether the candidate goes to the target stage.
        stage: The stage it goes to when promoted (``production`` or ``staging``).
        reason: One sentence with the numbers that decided it.
        metric: The primary metric key (``test_ndcg@10``).
        candidate: Candidate value of the primary metric.
        baseline: First-stage (e.g. BM25) value on the same queries.
        production: Value of the current production version, or None when there is none.
        production_version: Name of the current production version, or None.
    """

    promote: bool
    stage: str
    reason: str
    metric: str
    candidate: float
    baseline: float
    production: float | None = None
    production_version: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def decide_promotion(
    metric: str,
    candidate: float,
    baseline: float,
    baseline_significant: bool,
    production: float | None,
    production_version: str | None,
    params: PromotionParams,
) -> PromotionDecision:
    """Promote only if the candidate beats the baseline and the production version by at least ``min_delta``.

    Example: candidate 0.71, BM25 0.52, production 0.70, min_delta 0.005 → 0.71 − 0.70 = 0.01 ≥ 0.005 → promote.
    """
    common = dict(stage=params.stage, metric=metric, candidate=candidate, baseline=baseline,
                  production=production, production_version=production_version)
    if candidate - baseline < params.min_delta or candidate <= baseline:
        return PromotionDecision(False, reason=f"{metric} {candidate:.4f} does not beat the first-stage baseline "
                                 f"{baseline:.4f} by {params.min_delta}", **common)
    if params.require_significance and not baseline_significant:
        return PromotionDecision(False, reason=f"{metric} {candidate:.4f} beats the baseline {baseline:.4f} but the "
                                 "paired test is not significant", **common)
    if production is None:
        return PromotionDecision(True, reason=f"no {params.stage} version yet; {metric} {candidate:.4f} beats the "
                                 f"baseline {baseline:.4f}", **common)
    if candidate - production < params.min_delta or candidate <= production:
        return PromotionDecision(False, reason=f"{metric} {candidate:.4f} does not beat {params.stage} version "
                                 f"{production_version} ({production:.4f}) by {params.min_delta}", **common)
    return PromotionDecision(True, reason=f"{metric} {candidate:.4f} beats {params.stage} version "
                             f"{production_version} ({production:.4f}) and the baseline {baseline:.4f}", **common)
