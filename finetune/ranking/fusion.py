"""Score interpolation: a reranker's scores mixed with the first stage's and the starting model's, per query."""

from __future__ import annotations

from collections.abc import Sequence

from finetune.data.types import Run


def min_max(scores: dict[str, float]) -> dict[str, float]:
    """Scores mapped to [0, 1] within one query (all equal → all 0)."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {pid: (value - low) / span if span > 0 else 0.0 for pid, value in scores.items()}


def fuse(runs: Sequence[tuple[Run, float]]) -> Run:
    """Weighted sum of min-max normalised scores over the first run's candidates.

    Every query and passage of the first run (the reranker) is kept; a passage another run did not score gets 0
    from it (its lowest normalised value). Weights of 0 are skipped.

    Example: reranker {a: 5, b: 1} weight 0.7, BM25 {a: 10, b: 20} weight 0.3 → a = 0.7, b = 0.3.
    """
    if not runs:
        raise ValueError("fuse needs at least one run")
    base, _ = runs[0]
    fused: Run = {}
    for qid, scores in base.items():
        total = dict.fromkeys(scores, 0.0)
        for run, weight in runs:
            if weight == 0.0:
                continue
            normalised = min_max({pid: run.get(qid, {}).get(pid) for pid in scores if pid in run.get(qid, {})})
            for pid in total:
                total[pid] += weight * normalised.get(pid, 0.0)
        fused[qid] = total
    return fused
