"""The "Ranking on real data" table: the latest run of each MS MARCO → TREC DL 2019 recipe, read from ZenML.

Run after the recipes (``make bench-quality`` runs them: configs/*_msmarco.yaml): for every pipeline it loads the
latest successful run's ``comparison`` artifact (per-query values of every run on the 43 DL19 queries) and
writes one row per ranking (BM25, the untrained starting model, the trained model, a fused candidate, a teacher):
nDCG@10 and MRR@10 with 95 % t intervals over queries, paired t-test p-values against BM25 and against the
zero-shot bi-encoder, training updates and wall minutes of the run. Writes ``bench/results/ranking_msmarco.json``
and prints the Markdown table.

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


def latest(pipeline: str):
    """The latest completed run of ``pipeline`` whose config names an MS MARCO recipe model, or None."""
    from zenml.client import Client

    client = Client()
    try:
        runs = client.list_pipeline_runs(pipeline_name=pipeline, sort_by="desc:created", size=20).items
    except KeyError:
        return None
    for run in runs:
        model = run.model_version.model.name if run.model_version else ""
        if str(run.status) == "completed" and model.endswith("_msmarco"):
            return run
    return None


def updates(run) -> int | None:
    for step in run.steps.values():
        if "training_log" in step.outputs:
            log = step.outputs["training_log"][0].load()
            steps = [entry["step"] for entry in log if "step" in entry]
            return max(steps) if steps else None
    return None


def rows() -> list[dict]:
    out: list[dict] = []
    zero_shot = None
    for pipeline in PIPELINES:
        run = latest(pipeline)
        if run is None:
            continue
        comparison = next(step.outputs["comparison"][0].load() for step in run.steps.values()
                          if "comparison" in step.outputs)
        per_query = comparison["per_query"]
        if "zero_shot" in per_query and pipeline == "cross_encoder_training":
            zero_shot = per_query["zero_shot"]
        minutes = (run.end_time - run.start_time).total_seconds() / 60 if run.end_time else float("nan")
        for name, values in per_query.items():
            row = {"pipeline": pipeline, "model": run.model_version.model.name, "run": name,
                   "updates": updates(run) if name not in ("bm25", "source_run", "zero_shot", "teacher") else 0,
                   "minutes": round(minutes, 1)}
            for metric in METRICS:
                v = np.array(list(values[metric].values()))
                row[metric] = float(v.mean())
                row[f"{metric} 95% CI"] = interval(v)
                base = comparison["baseline"]
                row[f"{metric} p vs BM25"] = None if name == base else paired_p(values[metric], per_query[base][metric])
                reference = per_query.get("zero_shot") or zero_shot
                row[f"{metric} p vs zero-shot"] = None if reference is None or name == "zero_shot" else \
                    paired_p(values[metric], reference[metric])
            out.append(row)
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| pipeline | run | updates | run minutes | nDCG@10 [95 % CI] | p vs BM25 | p vs zero-shot | MRR@10 |",
             "|---|---|---|---|---|---|---|---|"]

    def p(value):
        return "" if value is None else f"{value:.3g}"

    for r in table:
        low, high = r["ndcg@10 95% CI"]
        lines.append(f"| {r['pipeline']} | {r['run']} | {r['updates'] or ''} | {r['minutes']} | "
                     f"{r['ndcg@10']:.4f} [{low:.3f}, {high:.3f}] | {p(r['ndcg@10 p vs BM25'])} | "
                     f"{p(r['ndcg@10 p vs zero-shot'])} | {r['mrr@10']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    table = rows()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(table, indent=2) + "\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
