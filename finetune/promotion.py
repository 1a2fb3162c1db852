"""The promotion gate, free of ZenML: given the candidate's and production's metrics, promote or not, and why.

Every model version stores its per-item values (per-query nDCG, per-example ROUGE-L, per-pair preference
correctness, per-prompt reward, per-window perplexity) next to its metrics, so a later candidate is compared with
production on the items both were evaluated on, with a paired test; where no per-item values exist the gate
compares the means.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats

from finetune.params import PromotionParams
from finetune.ranking.metrics import paired_p_value

# The method comparison's baseline row: the base model before any training (recorded, never a candidate).
UNTUNED = "untuned"

# Metric names containing one of these are better when lower (test_perplexity, test_nll, eval_loss).
LOWER_IS_BETTER = ("perplexity", "nll", "loss")


def higher_is_better(metric: str) -> bool:
    """False for perplexity, negative log-likelihood and losses; True for everything else (nDCG, ROUGE, ...)."""
    return not any(word in metric for word in LOWER_IS_BETTER)


def item_key(*texts: str) -> str:
    """A stable id for an evaluation item named by its text (a prompt; a prompt and its two answers): the first
    16 hex digits of the sha256 of the texts joined by NUL, so two versions pair the items they share."""
    return hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()[:16]


def per_query_values(comparison: Mapping, run: str, metric: str) -> dict[str, float]:
    """qid -> value of ``metric`` (``test_ndcg@10`` or ``ndcg@10``) for ``run`` in a ranx run comparison dict.

    Raises:
        ValueError: The run or the metric is not in the comparison.
    """
    name = metric.removeprefix("test_")
    per_query = comparison["per_query"]
    if run not in per_query or name not in per_query[run]:
        raise ValueError(f"the comparison has no per-query {name} for run {run!r} (runs: {sorted(per_query)})")
    return {str(qid): float(value) for qid, value in per_query[run][name].items()}


@dataclass(frozen=True)
class PairedComparison:
    """Candidate and production on the items both were evaluated on."""

    n_items: int
    candidate_mean: float
    production_mean: float
    p_value: float


def compare_paired(
    candidate: Mapping[str, float], production: Mapping[str, float], stat_test: str = "student"
) -> PairedComparison | None:
    """Paired test on the shared item ids; None when fewer than two items are shared (nothing to pair)."""
    aligned = _shared_items(candidate, production)
    if aligned is None:
        return None
    cand, prod = aligned
    return PairedComparison(len(cand), float(cand.mean()), float(prod.mean()),
                            paired_p_value(cand, prod, stat_test=stat_test))


def _shared_items(candidate: Mapping[str, float], baseline: Mapping[str, float]
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Both systems' values on the item ids they share, in one order; None when fewer than two are shared."""
    shared = sorted(set(candidate) & set(baseline))
    if len(shared) < 2:
        return None
    return (np.array([candidate[item] for item in shared], dtype=np.float64),
            np.array([baseline[item] for item in shared], dtype=np.float64))


def paired_difference(candidate: Mapping[str, float], baseline: Mapping[str, float], name: str,
                      log: bool = False) -> dict[str, float]:
    """Mean per-item difference candidate − baseline on the items both were evaluated on, its 95 % t interval and
    the paired t-test's p: ``<name>``, ``<name>_ci_low``, ``<name>_ci_high``, ``<name>_p``, ``<name>_n``. With
    ``log`` the values are compared as logarithms (per-window perplexities: the difference of mean NLLs). Empty
    when fewer than two items are shared.

    Example: candidate 0.5, 0.6, 0.7, baseline 0.1, 0.3, 0.2 → differences 0.4, 0.3, 0.5: mean 0.4, standard
    error 0.1/√3 = 0.0577, t(0.975, 2) = 4.303 → interval 0.4 ± 0.2484 = [0.1516, 0.6484], p = 0.0202.
    """
    aligned = _shared_items(candidate, baseline)
    if aligned is None:
        return {}
    cand, base = aligned
    if log:
        cand, base = np.log(cand), np.log(base)
    diff = cand - base
    mean, half = float(diff.mean()), 0.0
    if diff.std(ddof=1) > 0:
        half = float(scipy.stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)))
    return {name: mean, f"{name}_ci_low": mean - half, f"{name}_ci_high": mean + half,
            f"{name}_p": paired_p_value(cand, base), f"{name}_n": float(len(diff))}


def baseline_significance(metric: str, candidate: Mapping[str, float], baseline: Mapping[str, float],
                          params: PromotionParams) -> dict[str, float]:
    """The candidate's paired test against the baseline on the items both were evaluated on, named as a ranking
    evaluator names its test against the first stage: ``p_value_<metric>`` and ``significant_<metric>`` (1.0 when
    p < ``params.alpha`` and the candidate's mean is better in the metric's direction, else 0.0). Empty when fewer
    than two items are shared, so the gate says the test was not run.

    Example (ROUGE-L per prompt, student test): candidate 0.5, 0.6, 0.7, baseline 0.1, 0.3, 0.2 → differences
    0.4, 0.3, 0.5, mean 0.4, sd 0.1, t = 0.4 / (0.1/√3) = 6.93, df 2 → p = 0.0202 < 0.05 → significant.
    """
    paired = compare_paired(candidate, baseline, params.stat_test)
    if paired is None:
        return {}
    better = (paired.candidate_mean - paired.production_mean) * (1.0 if higher_is_better(metric) else -1.0) > 0
    significant = paired.p_value < params.alpha and better
    return {f"p_value_{metric}": paired.p_value, f"significant_{metric}": float(significant)}


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of the gate.

    Attributes:
        promote: Whether the candidate goes to the target stage.
        stage: The stage it goes to when promoted (``production`` or ``staging``).
        reason: One sentence with the numbers that decided it.
        metric: The primary metric key (``test_ndcg@10``).
        candidate: Candidate value of the primary metric.
        baseline: Baseline value (BM25, the few-shot or untrained base model), or None when there is none.
        production: Value of the current production version, or None when there is none.
        production_version: Name of the current production version, or None.
        higher_is_better: The metric's direction.
        p_value: p of the paired test against production, None when there was no paired test.
        n_items: Number of items the paired test compared.
        alpha: Threshold the p-value had to be below.
    """

    promote: bool
    stage: str
    reason: str
    metric: str
    candidate: float
    baseline: float | None = None
    production: float | None = None
    production_version: str | None = None
    higher_is_better: bool = True
    p_value: float | None = None
    n_items: int | None = None
    alpha: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def strongest_baseline(metric: str, values: Mapping[str, float]) -> str | None:
    """The name of the hardest baseline to beat in ``metric``'s direction (None when there is none)."""
    if not values:
        return None
    pick = max if higher_is_better(metric) else min
    return pick(values, key=lambda name: values[name])


def decide_promotion(
    metric: str,
    candidate: float,
    params: PromotionParams,
    *,
    baseline: float | None = None,
    baseline_significant: bool | None = None,
    production: float | None = None,
    production_version: str | None = None,
    candidate_items: Mapping[str, float] | None = None,
    production_items: Mapping[str, float] | None = None,
) -> PromotionDecision:
    """Promote only if the candidate beats the baseline and production by more than ``min_delta``, in the
    metric's direction, and, where both versions have per-item values, significantly (paired test, p < alpha).

    Examples (higher is better, min_delta 0.005, alpha 0.05):

    - no production, candidate 0.71, BM25 0.52 → 0.71 − 0.52 = 0.19 ≥ 0.005 → promote.
    - production 0.70 (means only), candidate 0.71 → 0.01 ≥ 0.005 → promote.
    - shared items: candidate mean 0.71, production 0.70, p = 0.30 ≥ 0.05 → stays in staging.
    - test_perplexity (lower is better): candidate 12.0, production 12.5 → −0.5 is an improvement of 0.5.

    Equal values never promote: the improvement must be positive as well as at least ``min_delta``.
    """
    higher = higher_is_better(metric)
    sign = 1.0 if higher else -1.0

    def beats(value: float, reference: float) -> bool:
        gain = sign * (value - reference)
        return gain > 0 and gain >= params.min_delta

    common = dict(stage=params.stage, metric=metric, candidate=candidate, baseline=baseline, production=production,
                  production_version=production_version, higher_is_better=higher, alpha=params.alpha)
    direction = "" if higher else " (lower is better)"
    if baseline is not None and not beats(candidate, baseline):
        return PromotionDecision(False, reason=f"{metric} {candidate:.4f} does not beat the baseline {baseline:.4f} "
                                 f"by more than {params.min_delta}{direction}", **common)
    if params.require_significance and baseline is None:
        return PromotionDecision(False, reason=f"{metric} {candidate:.4f}: require_significance is set, but there is "
                                 "no baseline to test against", **common)
    if params.require_significance and not baseline_significant:
        why = "is not significant" if baseline_significant is False else \
            "was not run (no significance flag or per-item values of the baseline to pair)"
        return PromotionDecision(False, reason=f"{metric} {candidate:.4f}: the paired test against the baseline {why}",
                                 **common)
    against = "" if baseline is None else f"; beats the baseline {baseline:.4f}"
    if production is None:
        none = f"no {params.stage} version yet" if production_version is None else \
            f"{params.stage} version {production_version} has no {metric} to compare with"
        beaten = "" if baseline is None else f" beats the baseline {baseline:.4f}"
        return PromotionDecision(True, reason=f"{none}; {metric} {candidate:.4f}{beaten}{direction}", **common)
    who = f"{params.stage} version {production_version}"
    paired = None
    if candidate_items is not None and production_items is not None:
        paired = compare_paired(candidate_items, production_items, params.stat_test)
    if paired is None:
        why = "no per-item values to pair" if candidate_items is None or production_items is None else \
            "fewer than 2 shared items"
        if not beats(candidate, production):
            return PromotionDecision(False, reason=f"{metric} {candidate:.4f} does not beat {who} ({production:.4f}) "
                                     f"by more than {params.min_delta}{direction} ({why}: means compared)", **common)
        return PromotionDecision(True, reason=f"{metric} {candidate:.4f} beats {who} ({production:.4f}){direction}"
                                 f"{against} ({why}: means compared)", **common)
    numbers = (f"{metric} {paired.candidate_mean:.4f} vs {who} {paired.production_mean:.4f} on "
               f"{paired.n_items} shared items, paired {params.stat_test} p = {paired.p_value:.3g}")
    common.update(p_value=paired.p_value, n_items=paired.n_items)
    if not beats(paired.candidate_mean, paired.production_mean):
        return PromotionDecision(False, reason=f"{numbers}: not better by more than {params.min_delta}{direction}",
                                 **common)
    if not paired.p_value < params.alpha:
        return PromotionDecision(False, reason=f"{numbers}: better but not significant (alpha {params.alpha})",
                                 **common)
    return PromotionDecision(True, reason=f"{numbers} < alpha {params.alpha}{direction}{against}", **common)


def best_method(rows: list[Mapping[str, object]], metric: str, exclude: tuple[str, ...] = (UNTUNED,)
                ) -> tuple[str, dict[str, float]]:
    """The method whose ``metric`` is best (in its direction) and the metrics to register for it.

    The returned metrics are the best row's numbers under their own names (``test_rougeL``) plus every row's
    ``<method>_<key>`` numbers, so the version records the whole comparison it won. Rows named in ``exclude``
    (the untuned base model, a baseline and not a candidate) are never chosen but their numbers are recorded:
    ``untuned_test_rougeL`` is what the gate compares the winner with.

    Raises:
        ValueError: No rows, or no candidate row has ``metric``.
    """
    scored = [row for row in rows if isinstance(row.get(metric), int | float) and row.get("method") not in exclude]
    if not scored:
        raise ValueError(f"no method has {metric}; measured: {sorted({k for row in rows for k in row})}")
    sign = 1.0 if higher_is_better(metric) else -1.0
    best = max(scored, key=lambda row: sign * float(row[metric]))
    numbers = {key: float(value) for key, value in best.items() if isinstance(value, int | float)}
    for row in rows:
        numbers.update({f"{row['method']}_{key}": float(value) for key, value in row.items()
                        if isinstance(value, int | float)})
    return str(best["method"]), numbers


def parent_specs(parents: Mapping[str, object]) -> dict[str, dict]:
    """Parent models by role as JSON dicts for the model version: a model spec's fields (``kind: registered``
    ones are resolved to a version number by the gate step), a plain value such as ``teacher`` (the student
    starts from the teacher) as ``{"model": value}``; roles without a model (None) are left out."""
    specs = {}
    for role, spec in parents.items():
        if spec is None:
            continue
        specs[role] = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else {"model": str(spec)}
    return specs


def data_check(current: Mapping[str, str], recorded: Mapping[str, str] | None, force: bool = False,
               version: str | None = None, *, stage: str) -> dict:
    """Whether to retrain: the data sources' fingerprints (path -> sha256) against those recorded on version
    ``version``, the one in ``stage`` (``PromotionParams.stage``: ``production`` or ``staging``).

    Returns:
        ``retrain`` (bool), ``reason`` (one sentence naming the stage), and the ``changed``, ``added`` and
        ``removed`` paths.
    """
    recorded = dict(recorded or {})
    changed = sorted(p for p in set(current) & set(recorded) if current[p] != recorded[p])
    added, removed = sorted(set(current) - set(recorded)), sorted(set(recorded) - set(current))
    diff = {"changed": changed, "added": added, "removed": removed}
    if version is None:
        return {"retrain": True, "reason": f"no {stage} version yet: training", **diff}
    who = f"{stage} version {version}"
    if not recorded:
        return {"retrain": True, "reason": f"{who} has no data fingerprints: training", **diff}
    if changed or added or removed:
        parts = [f"{len(paths)} {what}" for what, paths in diff.items() if paths]
        return {"retrain": True, "reason": f"new data since {who} ({', '.join(parts)} of {len(current)} files): "
                "training", **diff}
    if force:
        return {"retrain": True, "reason": f"no new data since {who}, but force is set: training", **diff}
    return {"retrain": False, "reason": f"no new data since {who} (all {len(current)} files have the same sha256): "
            "nothing to train", **diff}
