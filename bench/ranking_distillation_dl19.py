"""TREC DL 2019: bi-encoder distillation (6-layer teacher → 3-layer student) and bi-encoder fine-tuning, two-fold.

The 43 judged queries are split by seed 13 into halves A and B; everything trained on one half is evaluated on the
other, so every query is scored by models that never saw it. Per fold:

- teacher: the packaged all-MiniLM-L6-v2 bi-encoder, zero-shot (cosine, mean pooling);
- student: the teacher with layers 0, 2, 4 kept, trained with MarginMSE on the teacher's scores of the mined
  (query, positive, 4 hard negatives) groups (``configs/dual_encoder_distillation_dl19.yaml``). Teacher and
  student rerank the held-out BM25 top-100 one after the other in the same process (``compare_teacher_student``,
  as the pipeline does), which gives both docs/s figures;
- the same 3-layer copy without any training, to show what distillation adds;
- the 6-layer model fine-tuned with MultipleNegativesRankingLoss (``configs/dual_encoder_training_dl19.yaml``),
  evaluated like the zero-shot model both as a reranker of the BM25 top-100 and as dense retrieval over the
  4,297 shipped passages.

Throughput does not depend on the weights, only on the architecture, so ``--throughput`` measures it alone: the
teacher and its untrained 3-layer copy rerank half B's 22 queries' BM25 top-100 (2,200 pairs) in turn,
``--repeats`` times, interleaved so that load from other processes hits both alike; the median docs/s is reported.

Run: ``python -m bench.ranking_distillation_dl19 [--throughput]`` (needs ../shared/evaldata).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.cross_encoder_dl19 import machine
from finetune.data.ranking import load_ranking_data
from finetune.params import (
    DenseEvalParams,
    DualEncoderDistillationParams,
    DualEncoderParams,
    MiningParams,
    RankingDataParams,
    RankingEvalParams,
    RetrievalParams,
    TeacherParams,
)
from finetune.ranking.cross_encoder import mine_hard_negatives
from finetune.ranking.distillation import compare_teacher_student, save_teacher, score_teacher
from finetune.ranking.dual_encoder import dense_evaluation, load_dual_encoder, rerank_dual, train_dual_encoder
from finetune.ranking.first_stage import first_stage_runs
from finetune.ranking.layer_dropping import drop_layers
from finetune.ranking.metrics import compare_runs

DISTILL_CONFIG = Path("configs/dual_encoder_distillation_dl19.yaml")
DUAL_CONFIG = Path("configs/dual_encoder_training_dl19.yaml")
RESULTS = Path("bench/results/ranking_distillation_dl19.json")
THROUGHPUT_RESULTS = Path("bench/results/ranking_distillation_dl19_throughput.json")


def measure_throughput(models: dict[str, Path], data, first_stage, depth: int, batch_size: int, max_length: int,
                       repeats: int) -> dict[str, dict]:
    """Median docs/s of each model reranking ``first_stage``'s top ``depth``, runs interleaved model by model."""
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, path in models.items():
            result = rerank_dual(path, data, first_stage, depth, batch_size, max_length=max_length)
            samples[name].append(result.docs_per_second)
    return {name: {"median_docs_per_second": round(statistics.median(values), 1),
                   "samples": [round(v, 1) for v in values], "pairs": sum(len(r) for r in first_stage.values())}
            for name, values in samples.items()}


def throughput_only(repeats: int) -> int:
    """Teacher vs its 3-layer copy on the 22 queries of half B, top-100 each (weights do not change speed)."""
    distill = yaml.safe_load(DISTILL_CONFIG.read_text())["parameters"]
    data = RankingDataParams.model_validate(distill["data"])
    teacher = TeacherParams.model_validate(distill["teacher"])
    distillation = DualEncoderDistillationParams.model_validate(distill["distillation"])
    evaluation = RankingEvalParams(**distill["evaluation"])
    half_a, half_b = load_ranking_data(data)
    _, run_b = first_stage_runs(half_a, half_b, RetrievalParams(**distill["retrieval"]))
    with tempfile.TemporaryDirectory() as tmp:
        teacher_dir, _, teacher_parameters = save_teacher(teacher.model, teacher.architecture, Path(tmp) / "t", [])
        kept = drop_layers(teacher_dir, Path(tmp) / "student", distillation.student.keep_layers)
        student_parameters = sum(p.numel() for p in load_dual_encoder(Path(tmp) / "student").parameters())
        measured = measure_throughput({"teacher_6l": teacher_dir, "student_3l": Path(tmp) / "student"}, half_b,
                                      run_b.scores, evaluation.rerank_depth,
                                      evaluation.batch_size, distillation.student.training.max_length, repeats)
    out = {"machine": machine(), "config": str(DISTILL_CONFIG), "kept_layers": list(kept),
           "teacher_num_parameters": teacher_parameters, "student_num_parameters": student_parameters,
           "repeats": repeats, **measured,
           "speedup": round(measured["student_3l"]["median_docs_per_second"]
                            / measured["teacher_6l"]["median_docs_per_second"], 3)}
    THROUGHPUT_RESULTS.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


def main() -> int:
    distill = yaml.safe_load(DISTILL_CONFIG.read_text())["parameters"]
    dual = yaml.safe_load(DUAL_CONFIG.read_text())["parameters"]
    data = RankingDataParams.model_validate(distill["data"])
    if not Path(data.train.collection).is_file():
        print(f"{data.train.collection}: not found (the benchmark needs ../shared/evaldata)", file=sys.stderr)
        return 1
    retrieval, mining = RetrievalParams(**distill["retrieval"]), MiningParams(**distill["mining"])
    teacher = TeacherParams.model_validate(distill["teacher"])
    distillation = DualEncoderDistillationParams.model_validate(distill["distillation"])
    evaluation = RankingEvalParams(**distill["evaluation"])
    dual_mining, dual_params = MiningParams(**dual["mining"]), DualEncoderParams.model_validate(dual["dual_encoder"])
    dense = DenseEvalParams(**dual["dense"])
    max_length = distillation.student.training.max_length
    half_a, half_b = load_ranking_data(data)
    runs: dict[str, dict] = {name: {} for name in (
        "bm25", "teacher_zero_shot_6l", "student_distilled_3l", "student_undistilled_3l", "dual_finetuned_6l",
        "dense_teacher_zero_shot_6l", "dense_dual_finetuned_6l")}
    folds = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        teacher_dir, description, teacher_parameters = save_teacher(teacher.model, teacher.architecture,
                                                                    work / "teacher", [])
        drop_layers(teacher_dir, work / "undistilled", distillation.student.keep_layers)
        for fold, (train_set, eval_set) in enumerate(((half_a, half_b), (half_b, half_a))):
            train_run, eval_run = first_stage_runs(train_set, eval_set, retrieval)
            pairs = mine_hard_negatives(train_set, train_run.scores, mining)
            scored, scoring_seconds = score_teacher(pairs, teacher_dir, "dual_encoder", teacher.batch_size,
                                                    max_length=teacher.max_length)
            student = train_dual_encoder(scored, distillation.student, work / f"student_{fold}",
                                         base_path=teacher_dir, base_description=description,
                                         default_every_other=True)
            compared = compare_teacher_student(
                (teacher_dir, "dual_encoder", teacher_parameters),
                (student.model_dir, "dual_encoder", student.num_parameters),
                eval_set, eval_run.scores, "bm25", evaluation, max_length)
            undistilled = rerank_dual(work / "undistilled", eval_set, eval_run.scores, evaluation.rerank_depth,
                                      evaluation.batch_size, max_length=max_length)
            dual_pairs = mine_hard_negatives(train_set, train_run.scores, dual_mining)
            start = time.perf_counter()
            tuned = train_dual_encoder(dual_pairs, dual_params, work / f"dual_{fold}")
            tuned_seconds = time.perf_counter() - start
            dense_runs = {}
            for name, path in (("teacher_zero_shot_6l", teacher_dir), ("dual_finetuned_6l", tuned.model_dir)):
                dense_runs[name] = dense_evaluation(load_dual_encoder(path, max_length=max_length), eval_set,
                                                    eval_run.scores, dense.k, evaluation.rerank_depth,
                                                    evaluation.batch_size, dense.chunk_size, dense.backend)
            fold_runs = {
                "bm25": eval_run.scores,
                "teacher_zero_shot_6l": compared.runs["teacher"],
                "student_distilled_3l": compared.runs["student"],
                "student_undistilled_3l": undistilled.run,
                "dual_finetuned_6l": dense_runs["dual_finetuned_6l"].rerank,
                "dense_teacher_zero_shot_6l": dense_runs["teacher_zero_shot_6l"].retrieval,
                "dense_dual_finetuned_6l": dense_runs["dual_finetuned_6l"].retrieval,
            }
            for name, run in fold_runs.items():
                runs[name].update(run)
            folds.append({
                "train_queries": len(train_set.queries), "eval_queries": len(eval_set.queries),
                "distillation_groups": int(scored["group"].nunique()), "teacher_scoring_seconds": round(
                    scoring_seconds, 1),
                "student_train_seconds": round(student.train_seconds, 1),
                "student_final_loss": student.log_history[-1]["loss"],
                "dual_train_rows": tuned.train_examples, "dual_train_seconds": round(tuned_seconds, 1),
                "dual_final_loss": tuned.log_history[-1]["loss"],
                **compared.stats,
                "student_teacher_ratio_ndcg@10": compared.metrics["student_teacher_ratio_test_ndcg@10"],
                "undistilled_docs_per_second": round(undistilled.docs_per_second, 1),
                "means": {name: compared.comparison.means[name] for name in ("bm25", "student", "teacher")},
            })
            print(json.dumps(folds[-1]), flush=True)
    qrels = {**half_a.qrels, **half_b.qrels}
    comparison = compare_runs(qrels, runs, list(evaluation.metrics), "bm25", stat_test=evaluation.stat_test,
                              alpha=evaluation.alpha, relevance_level=evaluation.relevance_level)
    versus_teacher = compare_runs(qrels, {k: runs[k] for k in ("teacher_zero_shot_6l", "student_distilled_3l",
                                                               "student_undistilled_3l", "dual_finetuned_6l")},
                                  list(evaluation.metrics), "teacher_zero_shot_6l", stat_test=evaluation.stat_test,
                                  alpha=evaluation.alpha, relevance_level=evaluation.relevance_level)
    out = {"machine": machine(), "configs": [str(DISTILL_CONFIG), str(DUAL_CONFIG)], "queries": len(qrels),
           "teacher_num_parameters": teacher_parameters, "folds": folds, "means": comparison.means,
           "p_values_vs_bm25": comparison.p_values, "p_values_vs_teacher": versus_teacher.p_values}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    print(comparison.to_markdown())
    print(versus_teacher.to_markdown())
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throughput", action="store_true", help="only measure teacher vs 3-layer docs/s")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.exit(throughput_only(args.repeats) if args.throughput else main())
