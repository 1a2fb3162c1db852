"""Quality against training updates: a cross-encoder's kept checkpoints reranking TREC DL 2019, alone and fused.

    python -m bench.ranking_learning_curve /tmp/ce_ckpt/cross_encoder_student/<key>

Run after a ``cross_encoder_training`` recipe whose ``training.checkpoints`` block keeps its checkpoints
(``every_steps: N``, ``keep: true``, ``save_total_limit`` ≥ their number). The latest completed run of that pipeline
supplies everything but the checkpoints, read from ZenML: the evaluation set, BM25's run, the zero-shot starting
model's run and the fusion weights. Each ``checkpoint-<step>`` folder reranks the same 43 queries × top-100 with
the pipeline's own ``rerank`` and ``fuse``; per-query nDCG@10 and MRR@10 (relevance level 2 for MRR, as the recipes)
get 95 % t intervals and paired t-tests against BM25 and against the zero-shot bi-encoder. Within one run the
learning rate decays over the whole schedule, so checkpoint N is not the model an N-update schedule would give.
Writes ``bench/results/ranking_learning_curve.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from bench.ranking_msmarco import interval, paired_p

RESULTS = Path("bench/results/ranking_learning_curve.json")


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``checkpoint-<step>`` folders under ``folder``, by step."""
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    if not found:
        raise SystemExit(f"{folder}: no checkpoint-<step> folders (set training.checkpoints.keep: true)")
    return sorted(found)


def latest_run_inputs(pipeline: str = "cross_encoder_training"):
    """(eval set, BM25 run, zero-shot run, fusion weights, evaluation params, max_length) of the latest run."""
    from zenml.client import Client

    from finetune.params import FusionParams, RankingEvalParams

    runs = Client().list_pipeline_runs(pipeline_name=pipeline, sort_by="desc:created", size=20).items
    run = next((r for r in runs if str(r.status) == "completed"), None)
    if run is None:
        raise SystemExit(f"no completed {pipeline} run in this ZenML store")
    steps = run.steps
    eval_set = steps["load_msmarco"].outputs["eval_set"][0].load()
    bm25 = steps["retrieve_first_stage"].outputs["eval_first_stage_run"][0].load()
    start = steps["rerank_starting_point"].outputs["starting_point_run"][0].load()
    parameters = run.config.parameters or {}
    fusion = FusionParams(**parameters["fusion"]) if parameters.get("fusion") else None
    evaluation = RankingEvalParams(**parameters.get("evaluation", {}))
    max_length = parameters["cross_encoder"]["training"].get("max_length")
    return run, eval_set, bm25, start, fusion, evaluation, max_length


def summary(qrels, run, bm25_q: dict, zero_q: dict, relevance_level: int) -> dict:
    from finetune.ranking.metrics import per_query_scores

    ndcg = per_query_scores(qrels, run, "ndcg@10", relevance_level)
    mrr = per_query_scores(qrels, run, "mrr@10", relevance_level)
    low, high = interval(np.array([ndcg[q] for q in sorted(ndcg)]))
    return {"ndcg@10": float(np.mean(list(ndcg.values()))), "ndcg@10_ci": [low, high],
            "mrr@10": float(np.mean(list(mrr.values()))),
            "p_vs_bm25": paired_p(ndcg, bm25_q), "p_vs_zero_shot": paired_p(ndcg, zero_q), "per_query": ndcg}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the trainer's checkpoint folder (holds checkpoint-<step>)")
    args = parser.parse_args(argv)

    from finetune.ranking.cross_encoder import rerank
    from finetune.ranking.fusion import fuse
    from finetune.ranking.metrics import per_query_scores

    found = checkpoints(args.folder)
    run, eval_set, bm25, start, fusion, evaluation, max_length = latest_run_inputs()
    level = evaluation.relevance_level
    bm25_q = per_query_scores(eval_set.qrels, bm25.scores, "ndcg@10", level)
    zero_q = per_query_scores(eval_set.qrels, start.scores, "ndcg@10", level)
    rows = [{"model": "bm25", "step": 0, **summary(eval_set.qrels, bm25.scores, bm25_q, zero_q, level)},
            {"model": "zero_shot", "step": 0, **summary(eval_set.qrels, start.scores, bm25_q, zero_q, level)}]
    for step, folder in found:
        began = time.perf_counter()
        reranked = rerank(folder, eval_set, bm25.scores, evaluation.rerank_depth, evaluation.batch_size,
                          max_length=max_length).run
        rows.append({"model": "cross_encoder", "step": step,
                     **summary(eval_set.qrels, reranked, bm25_q, zero_q, level)})
        if fusion is not None:
            fused = fuse([(reranked, fusion.reranker), (bm25.scores, fusion.first_stage),
                          (start.scores, fusion.starting_point)])
            rows.append({"model": "fused", "step": step, **summary(eval_set.qrels, fused, bm25_q, zero_q, level)})
        print(f"checkpoint-{step}: {time.perf_counter() - began:.0f} s", flush=True)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"pipeline_run": str(run.id), "checkpoints": str(args.folder),
                                   "fusion": fusion.model_dump() if fusion else None, "rows": rows}, indent=1))
    print("| model | updates | nDCG@10 [95 % CI] | MRR@10 | p vs BM25 | p vs zero-shot |")
    print("|---|---:|---|---:|---:|---:|")
    for row in rows:
        low, high = row["ndcg@10_ci"]
        print(f"| {row['model']} | {row['step'] or ''} | {row['ndcg@10']:.4f} [{low:.3f}, {high:.3f}] | "
              f"{row['mrr@10']:.4f} | {row['p_vs_bm25']:.3g} | {row['p_vs_zero_shot']:.3g} |")


if __name__ == "__main__":
    main()
