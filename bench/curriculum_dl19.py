"""TREC DL 2019: curriculum learning (Penha & Hauff) vs standard training of a cross-encoder, two-fold, several seeds.

The 43 judged queries are split by seed 13 into halves A and B (as ``bench/cross_encoder_dl19.py``): models trained
on A rerank B's BM25 top-100 and vice versa, so every query is scored by a model that never saw it. For every
training seed, standard training and each curriculum of ``configs/ranking_curriculum_dl19.yaml`` train the same
model with the same seed and the same number of updates; only the order of the data differs. Each curriculum is
compared with standard training by a paired t-test over the 43 queries, per seed and on the per-query values
averaged over the seeds. Run: ``python -m bench.curriculum_dl19 [--seeds 42 43 44]`` (needs ../shared/evaldata).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.cross_encoder_dl19 import machine
from finetune.curriculum import QueryCurriculum
from finetune.data.ranking import load_ranking_data
from finetune.params import (
    CrossEncoderParams,
    CurriculumParams,
    MiningParams,
    RankingDataParams,
    RankingEvalParams,
    RetrievalParams,
)
from finetune.ranking.cross_encoder import mine_hard_negatives, rerank, train_cross_encoder
from finetune.ranking.curriculum import NEEDS_TRAINED_MODEL, STANDARD, score_difficulty
from finetune.ranking.first_stage import first_stage_runs
from finetune.ranking.metrics import compare_runs, paired_p_value

CONFIG = Path("configs/ranking_curriculum_dl19.yaml")
RESULTS = Path("bench/results/curriculum_dl19.json")


def summarise(per_seed: dict, qrels: dict, arms: list[str], evaluation: RankingEvalParams) -> dict:
    """Per metric and arm: the mean over seeds, each seed's mean, and p-values against standard training.

    ``p_vs_standard_seed_averaged`` is the paired test on each query's value averaged over the seeds (43 pairs);
    ``p_vs_standard_per_seed`` are the per-seed tests.
    """
    summary = {}
    for metric in evaluation.metrics:
        averaged = {arm: np.mean([[c.per_query[arm][metric][q] for q in qrels] for c in per_seed.values()], axis=0)
                    for arm in ["bm25", *arms]}
        summary[metric] = {
            arm: {"mean_over_seeds": float(averaged[arm].mean()),
                  "per_seed": [c.means[arm][metric] for c in per_seed.values()],
                  "p_vs_standard_seed_averaged": None if arm == STANDARD else
                  paired_p_value(averaged[arm], averaged[STANDARD], evaluation.stat_test),
                  "p_vs_standard_per_seed": None if arm == STANDARD else
                  [c.p_values[arm][metric] for c in per_seed.values()]}
            for arm in ["bm25", *arms]
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    params = yaml.safe_load(args.config.read_text())["parameters"]
    data = RankingDataParams.model_validate(params["data"])
    if not Path(data.train.collection).is_file():
        print(f"{data.train.collection}: not found (the benchmark needs ../shared/evaldata)", file=sys.stderr)
        return 1
    retrieval, mining = RetrievalParams(**params["retrieval"]), MiningParams(**params["mining"])
    model = CrossEncoderParams.model_validate(params["cross_encoder"])
    curriculum = CurriculumParams.model_validate(params["curriculum"])
    evaluation = RankingEvalParams.model_validate(params["evaluation"])
    arms = [STANDARD, *(arm.name for arm in curriculum.arms)]
    half_a, half_b = load_ranking_data(data)
    qrels = {**half_a.qrels, **half_b.qrels}
    folds = []
    for train_set, eval_set in ((half_a, half_b), (half_b, half_a)):
        train_run, eval_run = first_stage_runs(train_set, eval_set, retrieval)
        folds.append((eval_set, eval_run, mine_hard_negatives(train_set, train_run.scores, mining)))
    bm25 = {qid: scores for _, eval_run, _ in folds for qid, scores in eval_run.scores.items()}
    per_seed, timings = {}, []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in args.seeds:
            training = model.training.model_copy(update={"seed": seed})
            seed_model = model.model_copy(update={"training": training})
            runs: dict[str, dict] = {arm: {} for arm in arms}
            for fold, (eval_set, eval_run, pairs) in enumerate(folds):
                trained_dirs = {}
                for arm_params in [None, *curriculum.arms]:
                    arm = STANDARD if arm_params is None else arm_params.name
                    if arm_params is None:
                        schedule = QueryCurriculum({}, STANDARD)
                    else:
                        name = arm_params.difficulty
                        scores = score_difficulty(
                            pairs, curriculum.difficulty_params(name, retrieval, training.max_length),
                            model_dir=str(trained_dirs[STANDARD]) if name in NEEDS_TRAINED_MODEL else None,
                            workdir=workdir)
                        schedule = QueryCurriculum(scores, arm_params.pacing, arm_params.invert, curriculum.c0,
                                                   curriculum.full_data_fraction, curriculum.seed)
                    model_out = Path(workdir) / f"{seed}-{fold}-{arm}"
                    start = time.perf_counter()
                    result = train_cross_encoder(pairs, seed_model, model_out, schedule)
                    train_seconds = time.perf_counter() - start
                    trained_dirs[arm] = result.model_dir
                    reranked = rerank(result.model_dir, eval_set, eval_run.scores, depth=evaluation.rerank_depth,
                                      batch_size=evaluation.batch_size, max_length=training.max_length)
                    runs[arm].update(reranked.run)
                    timings.append({"seed": seed, "fold": fold, "arm": arm, "train_seconds": round(train_seconds, 1),
                                    "updates": len(result.data_fraction), "final_loss": result.log_history[-1]["loss"],
                                    "rerank_seconds": round(reranked.seconds, 1)})
                    print(json.dumps(timings[-1]), flush=True)
            comparison = compare_runs(qrels, {"bm25": bm25, **runs}, list(evaluation.metrics), STANDARD,
                                      stat_test=evaluation.stat_test, alpha=evaluation.alpha,
                                      relevance_level=evaluation.relevance_level)
            per_seed[seed] = comparison
            print(f"seed {seed}\n{comparison.to_markdown()}", flush=True)
            # Written after every seed, so an interrupted run keeps the seeds it finished.
            out = {"machine": machine(), "config": str(args.config), "queries": len(qrels),
                   "seeds": list(per_seed), "arms": arms, "summary": summarise(per_seed, qrels, arms, evaluation),
                   "runs": timings}
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
