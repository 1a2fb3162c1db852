"""The "Ranking on real data" table: the latest run of each MS MARCO → TREC DL 2019 recipe, read from ZenML.

Run after the recipes (``make bench-quality`` runs them: configs/*_msmarco.yaml, three training seeds each through
``bench.run_seeds``): for every pipeline it loads the latest successful run of each of the 3 most recent training
seeds, reads its ``comparison`` artifact (per-query values of every run on the 43 DL19 queries) and
writes one row per ranking (BM25, the untrained starting model, the trained model, a fused candidate, a teacher):
nDCG@10 and MRR@10 with 95 % t intervals over queries, paired t-test p-values against BM25 and against the
zero-shot bi-encoder, training updates and wall minutes of the run; with several seeds, one more row per trained
ranking whose per-query values are the mean over seeds (the targets' "mean of ≥ 3 seeds", tested per query).
Writes ``bench/results/ranking_msmarco.json`` and prints the Markdown table.

A student/teacher comparison (distillation) has no zero-shot run of its own: its p against zero-shot pairs it with
the all-MiniLM-L6-v2 bi-encoder's per-query values from the cross_encoder_training run (the same 43 queries and
candidates), when that run exists.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import scipy.stats

RESULTS = Path("bench/results/ranking_msmarco.json")
PIPELINES = ("cross_encoder_training", "dual_encoder_training", "cross_encoder_distillation",
             "dual_encoder_distillation", "ranking_curriculum")
METRICS = ("ndcg@10", "mrr@10")


def interval(values: np.ndarray) -> tuple[float, float]:
    """95 % t interval of a mean over queries."""
    half = scipy.stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def paired_p(a: dict[str, float], b: dict[str, float]) -> float:
    queries = sorted(a)
    x, y = np.array([a[q] for q in queries]), np.array([b[q] for q in queries])
    return 1.0 if not (x - y).any() else float(scipy.stats.ttest_rel(x, y).pvalue)


def training_seed(parameters) -> int | None:
    """The first ``training.seed`` in a run's parameters (the one ``bench.run_seeds`` varies), or None."""
    if isinstance(parameters, dict):
        training = parameters.get("training")
        if isinstance(training, dict) and "seed" in training:
            return training["seed"]
        for value in parameters.values():
            seed = training_seed(value)
            if seed is not None:
                return seed
    return None


def latest_per_seed(pipeline: str, seeds: int = 3) -> list:
    """The latest completed run of ``pipeline`` for each of its ``seeds`` most recent training seeds, among runs
    whose model is an MS MARCO recipe's (name ending in ``_msmarco``); newest first."""
    from zenml.client import Client

    client = Client()
    try:
        runs = client.list_pipeline_runs(pipeline_name=pipeline, sort_by="desc:created", size=50).items
    except KeyError:
        return []
    chosen: dict = {}
    for run in runs:
        model = run.model_version.model.name if run.model_version else ""
        if str(run.status) != "completed" or not model.endswith("_msmarco"):
            continue
        seed = training_seed(run.config.parameters or {})
        if seed not in chosen and len(chosen) < seeds:
            chosen[seed] = run
    return list(chosen.values())


def updates(run) -> int | None:
    for step in run.steps.values():
        if "training_log" in step.outputs:
            log = step.outputs["training_log"][0].load()
            steps = [entry["step"] for entry in log if "step" in entry]
            return max(steps) if steps else None
    return None


def comparison_of(run) -> dict:
    return next(step.outputs["comparison"][0].load() for step in run.steps.values() if "comparison" in step.outputs)


def mean_over_seeds(per_query: list[dict]) -> dict:
    """Per-query metrics averaged over seeds: {run: {metric: {qid: mean}}} for runs every seed has."""
    names = [name for name in per_query[0] if all(name in pq for pq in per_query)]
    return {name: {metric: {qid: float(np.mean([pq[name][metric][qid] for pq in per_query]))
                            for qid in per_query[0][name][metric]}
                   for metric in METRICS}
            for name in names}


def row(pipeline: str, model: str, name: str, values: dict, per_query: dict, base: str, zero_shot, seeds: str,
        updates_: int | None, minutes: float) -> dict:
    out = {"pipeline": pipeline, "model": model, "run": name, "seeds": seeds, "baseline": base,
           "updates": updates_ if name not in ("bm25", "source_run", "zero_shot", "teacher") else 0,
           "minutes": round(minutes, 1)}
    for metric in METRICS:
        v = np.array(list(values[metric].values()))
        out[metric] = float(v.mean())
        out[f"{metric} 95% CI"] = interval(v)
        out[f"{metric} p vs BM25"] = None if name == base else paired_p(values[metric], per_query[base][metric])
        reference = per_query.get("zero_shot") or zero_shot
        out[f"{metric} p vs zero-shot"] = None if reference is None or name == "zero_shot" else \
            paired_p(values[metric], reference[metric])
    return out


def rows(seeds: int = 3) -> list[dict]:
    """One row per seed and ranking, then (with several seeds) one row per ranking for the mean over seeds."""
    out: list[dict] = []
    zero_shot = None
    for pipeline in PIPELINES:
        runs = latest_per_seed(pipeline, seeds)
        if not runs:
            continue
        comparisons = [comparison_of(run) for run in runs]
        base = comparisons[0]["baseline"]
        model = runs[0].model_version.model.name
        minutes = [(run.end_time - run.start_time).total_seconds() / 60 if run.end_time else float("nan")
                   for run in runs]
        if "zero_shot" in comparisons[0]["per_query"] and pipeline == "cross_encoder_training":
            zero_shot = comparisons[0]["per_query"]["zero_shot"]
        for run, comparison, wall in zip(runs, comparisons, minutes, strict=True):
            per_query = comparison["per_query"]
            seed = training_seed(run.config.parameters or {})
            seed = "default" if seed is None else str(seed)
            for name, values in per_query.items():
                out.append(row(pipeline, model, name, values, per_query, base, zero_shot, seed, updates(run), wall))
        if len(runs) > 1:
            mean = mean_over_seeds([c["per_query"] for c in comparisons])
            label = f"mean of {len(runs)}"
            for name, values in mean.items():
                if name in ("bm25", "source_run", "zero_shot", "teacher") and name in comparisons[0]["per_query"]:
                    continue                     # identical in every seed: already listed
                out.append(row(pipeline, model, name, values, mean, base, zero_shot, label, updates(runs[0]),
                               float(np.mean(minutes))))
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| pipeline | run | seed | updates | run minutes | nDCG@10 [95 % CI] | p vs BM25 | p vs zero-shot "
             "| MRR@10 |",
             "|---|---|---|---|---|---|---|---|---|"]

    def p(value):
        return "" if value is None else f"{value:.3g}"

    for r in table:
        low, high = r["ndcg@10 95% CI"]
        against = r.get("baseline", "source_run")
        first = p(r["ndcg@10 p vs BM25"])
        if first and against not in ("source_run", "bm25"):
            first += f" (vs {against})"      # the curriculum tests its arms against standard training
        lines.append(f"| {r['pipeline']} | {r['run']} | {r['seeds']} | {r['updates'] or ''} | {r['minutes']} | "
                     f"{r['ndcg@10']:.4f} [{low:.3f}, {high:.3f}] | {first} | "
                     f"{p(r['ndcg@10 p vs zero-shot'])} | {r['mrr@10']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    table = rows()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(table, indent=2) + "\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
