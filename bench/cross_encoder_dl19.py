"""TREC DL 2019: BM25 (Pyserini's official top-100 run) vs our cross-encoder reranker, two-fold.

The 43 judged queries are split by a seed into halves A and B; a reranker trained on A scores B and one trained
on B scores A, so every query is evaluated by a model that never saw it. Parameters come from
``configs/cross_encoder_training_dl19.yaml`` (the same pipeline config the README shows), so the benchmark and
the pipeline train the same way. As a reference that needs no training, the packaged all-MiniLM-L6-v2 is also
used as what it was built for, a sentence-transformers bi-encoder, to rerank the same top-100 zero-shot (cosine
similarity). Run: ``python -m bench.cross_encoder_dl19`` (needs ../shared/evaldata).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from finetune.data.ranking import load_ranking_data
from finetune.models.sources import resolve_model, sentence_transformers_kwargs
from finetune.params import CrossEncoderParams, MiningParams, RankingDataParams, RankingEvalParams, RetrievalParams
from finetune.ranking.cross_encoder import mine_hard_negatives, rerank, train_cross_encoder
from finetune.ranking.first_stage import first_stage_runs
from finetune.ranking.metrics import Run, compare_runs

CONFIG = Path("configs/cross_encoder_training_dl19.yaml")
RESULTS = Path("bench/results/cross_encoder_dl19.json")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def bi_encoder_rerank(model_path: str, data, first_stage: Run, depth: int) -> Run:
    """Zero-shot reranking of the first stage's top ``depth`` by cosine similarity of sentence embeddings."""
    from sentence_transformers import SentenceTransformer

    from finetune.ranking.cross_encoder import top_candidates

    encoder = SentenceTransformer(model_path, device="cuda" if torch.cuda.is_available() else "cpu",
                                  **sentence_transformers_kwargs())
    qids = sorted(first_stage)
    pids = sorted({pid for qid in qids for pid in top_candidates(first_stage, qid, depth)})
    q = encoder.encode([data.queries[qid] for qid in qids], normalize_embeddings=True, convert_to_tensor=True)
    p = encoder.encode([data.corpus[pid] for pid in pids], normalize_embeddings=True, convert_to_tensor=True,
                       batch_size=64)
    row = {pid: i for i, pid in enumerate(pids)}
    scores = (q @ p.T).cpu()
    return {qid: {pid: float(scores[i, row[pid]]) for pid in top_candidates(first_stage, qid, depth)}
            for i, qid in enumerate(qids)}


def main() -> int:
    params = yaml.safe_load(CONFIG.read_text())["parameters"]
    data = RankingDataParams.model_validate(params["data"])
    if not Path(data.train.collection).is_file():
        print(f"{data.train.collection}: not found (the benchmark needs ../shared/evaldata)", file=sys.stderr)
        return 1
    retrieval, mining = RetrievalParams(**params["retrieval"]), MiningParams(**params["mining"])
    model, evaluation = CrossEncoderParams.model_validate(params["cross_encoder"]), RankingEvalParams(
        **params["evaluation"])
    half_a, half_b = load_ranking_data(data)
    reranked, bm25, bi_encoder, folds = {}, {}, {}, []
    for train_set, eval_set in ((half_a, half_b), (half_b, half_a)):
        train_run, eval_run = first_stage_runs(train_set, eval_set, retrieval)
        pairs = mine_hard_negatives(train_set, train_run.scores, mining)
        with tempfile.TemporaryDirectory() as workdir:
            start = time.perf_counter()
            trained = train_cross_encoder(pairs, model, workdir)
            train_seconds = time.perf_counter() - start
            result = rerank(trained.model_dir, eval_set, eval_run.scores, depth=evaluation.rerank_depth,
                            batch_size=evaluation.batch_size, max_length=model.training.max_length)
        zero_shot = bi_encoder_rerank(resolve_model(model.model, ".").name_or_path, eval_set, eval_run.scores,
                                      evaluation.rerank_depth)
        fold_runs = {"bm25": eval_run.scores, "bi_encoder_zero_shot": zero_shot, "cross_encoder": result.run}
        fold_means = compare_runs(eval_set.qrels, fold_runs, list(evaluation.metrics), "bm25",
                                  relevance_level=evaluation.relevance_level).means
        reranked.update(result.run)
        bi_encoder.update(zero_shot)
        bm25.update(eval_run.scores)  # the same top-k the reranker saw, so recall@k is equal by construction
        folds.append({
            "train_queries": len(train_set.queries), "eval_queries": len(eval_set.queries),
            "train_pairs": len(pairs), "train_seconds": round(train_seconds, 1),
            "final_loss": trained.log_history[-1]["loss"], "docs_per_second": round(result.docs_per_second, 1),
            "means": fold_means,
        })
        print(json.dumps(folds[-1]), flush=True)
    qrels = {**half_a.qrels, **half_b.qrels}
    runs = {"bm25": bm25, "bi_encoder_zero_shot": bi_encoder, "cross_encoder": reranked}
    comparison = compare_runs(qrels, runs, list(evaluation.metrics), "bm25",
                              stat_test=evaluation.stat_test, alpha=evaluation.alpha,
                              relevance_level=evaluation.relevance_level)
    out = {"machine": machine(), "config": str(CONFIG), "queries": len(qrels), "folds": folds,
           "means": comparison.means, "p_values": comparison.p_values}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    print(comparison.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
