"""Ranking pipelines."""

from zenml import Model, pipeline
from zenml.enums import ExecutionMode

from finetune.params import (
    CrossEncoderDistillationParams,
    CrossEncoderParams,
    CurriculumParams,
    DenseEvalParams,
    DualEncoderDistillationParams,
    DualEncoderParams,
    MiningParams,
    PromotionParams,
    RankingDataParams,
    RankingEvalParams,
    RegisteredModel,
    RetrievalParams,
    TeacherParams,
)
from finetune.ranking.curriculum import NEEDS_TRAINED_MODEL, STANDARD
from finetune.ranking.evaluation import metric_key
from finetune.registry import parent_specs
from steps.data.fingerprint_sources import fingerprint_sources
from steps.data.load_msmarco import load_msmarco
from steps.data.mine_hard_negatives import mine_hard_negatives
from steps.data.retrieve_first_stage import retrieve_first_stage
from steps.data.score_difficulty import score_difficulty
from steps.data.score_teacher import score_teacher
from steps.evaluate.build_curriculum_report import build_curriculum_report
from steps.evaluate.build_ranking_report import build_ranking_report
from steps.evaluate.compare_teacher_student import compare_teacher_student
from steps.evaluate.evaluate_curricula import evaluate_curricula
from steps.evaluate.evaluate_dual_encoder import evaluate_dual_encoder
from steps.evaluate.evaluate_reranker import evaluate_reranker
from steps.evaluate.rerank_candidates import rerank_candidates
from steps.registry.fingerprint_models import fingerprint_models
from steps.registry.hooks import discard_model_version_on_failure
from steps.registry.load_teacher_model import load_teacher_model
from steps.registry.promote_model import promote_model
from steps.registry.record_teacher import record_teacher
from steps.registry.select_best_model import select_best_model
from steps.train.distill_cross_encoder import distill_cross_encoder
from steps.train.distill_dual_encoder import distill_dual_encoder
from steps.train.train_cross_encoder import train_cross_encoder
from steps.train.train_cross_encoder_curriculum import train_cross_encoder_curriculum
from steps.train.train_dual_encoder import train_dual_encoder


def role_fingerprints(role: str, spec):
    """``fingerprint_models`` of one model role as step ``fingerprint_<role>``, the extra input of every step that
    loads that model: one artifact per role, so each step is keyed on its own model only (a new student does not
    re-run the teacher's scoring)."""
    return fingerprint_models(parent_specs({role: spec}), id=f"fingerprint_{role}")


def ranking_gate(metrics, comparison, candidate_run, fingerprints, evaluation: RankingEvalParams,
                 retrieval: RetrievalParams, promotion: PromotionParams, parents: dict, **options):
    """``promote_model`` for a ranking candidate: the primary metric against the first stage and production,
    paired on the per-query values of ``candidate_run`` in the ranx comparison; ``parents`` are model specs."""
    decision, _ = promote_model(
        metrics, fingerprints, promotion, metric_key(evaluation.primary_metric), [],
        baseline_metric=metric_key(evaluation.primary_metric, retrieval.first_stage), comparison=comparison,
        candidate_run=candidate_run, parents=parent_specs(parents), **options)
    return decision


def cross_encoder_steps(fingerprints, data: RankingDataParams, retrieval: RetrievalParams, mining: MiningParams,
                        cross_encoder: CrossEncoderParams, evaluation: RankingEvalParams, promotion: PromotionParams,
                        train=train_cross_encoder):
    """Everything in ``cross_encoder_training`` after the fingerprints (``retraining`` reuses it).

    ``train(pairs, cross_encoder, model_fingerprints) -> (model_dir, training_log)`` is the training step; the
    multi-GPU variant (pipelines/multi_gpu.py) passes its staged ``run_with_accelerate`` step instead.
    """
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    model_dir, training_log = train(pairs, cross_encoder, role_fingerprints("base_model", cross_encoder.model))
    reranked, stats = rerank_candidates(model_dir, eval_set, eval_run, evaluation, cross_encoder.training.max_length)
    metrics, comparison = evaluate_reranker(eval_set, eval_run, reranked, evaluation)
    decision = ranking_gate(metrics, comparison, "cross_encoder", fingerprints, evaluation, retrieval, promotion,
                            {"base_model": cross_encoder.model})
    build_ranking_report(comparison, training_log, stats, decision, fingerprints, evaluation)


def dual_encoder_steps(fingerprints, data: RankingDataParams, retrieval: RetrievalParams, mining: MiningParams,
                       dual_encoder: DualEncoderParams, dense: DenseEvalParams, evaluation: RankingEvalParams,
                       promotion: PromotionParams):
    """Everything in ``dual_encoder_training`` after the fingerprints (``retraining`` reuses it)."""
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    model_dir, training_log = train_dual_encoder(pairs, dual_encoder,
                                                 role_fingerprints("base_model", dual_encoder.model))
    metrics, comparison, stats = evaluate_dual_encoder(model_dir, eval_set, eval_run, evaluation, dense,
                                                       dual_encoder.training.max_length)
    candidate = "dense" if dense.primary == "retrieval" else "rerank"
    decision = ranking_gate(metrics, comparison, candidate, fingerprints, evaluation, retrieval, promotion,
                            {"base_model": dual_encoder.model})
    build_ranking_report(comparison, training_log, stats, decision, fingerprints, evaluation,
                         title="Dual-encoder retrieval")


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def cross_encoder_training(
    data: RankingDataParams,
    retrieval: RetrievalParams = RetrievalParams(),
    mining: MiningParams = MiningParams(),
    cross_encoder: CrossEncoderParams = CrossEncoderParams(),
    evaluation: RankingEvalParams = RankingEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """MonoBERT reranking: BM25 top-k → hard negatives → cross-encoder → rerank held-out queries → ranx → gate."""
    cross_encoder_steps(fingerprint_sources(data), data, retrieval, mining, cross_encoder, evaluation, promotion)


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def dual_encoder_training(
    data: RankingDataParams,
    retrieval: RetrievalParams = RetrievalParams(),
    mining: MiningParams = MiningParams(),
    dual_encoder: DualEncoderParams = DualEncoderParams(),
    dense: DenseEvalParams = DenseEvalParams(),
    evaluation: RankingEvalParams = RankingEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """Bi-encoder: in-batch + hard negatives → dense retrieval over the corpus and BM25 reranking → ranx → gate."""
    dual_encoder_steps(fingerprint_sources(data), data, retrieval, mining, dual_encoder, dense, evaluation, promotion)


def teacher_model_dir(teacher: TeacherParams, train_pairs, teacher_fingerprints):
    """The teacher's model directory as a step input.

    A registered version's ``model_dir`` artifact is resolved when the run starts (a lazy model-artifact input),
    so the student's run lists the teacher's artifact among its inputs; a model spec is materialised by a step.
    """
    if isinstance(teacher.model, RegisteredModel):
        return Model(name=teacher.model.name, version=teacher.model.version).get_model_artifact("model_dir")
    return load_teacher_model(teacher, train_pairs, teacher_fingerprints)


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def cross_encoder_distillation(
    data: RankingDataParams,
    teacher: TeacherParams,
    retrieval: RetrievalParams = RetrievalParams(),
    mining: MiningParams = MiningParams(),
    distillation: CrossEncoderDistillationParams = CrossEncoderDistillationParams(),
    evaluation: RankingEvalParams = RankingEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """Teacher scores (once, cached) → smaller cross-encoder student → teacher vs student vs BM25 → gate."""
    fingerprints = fingerprint_sources(data)
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    teacher_fingerprints = role_fingerprints("teacher", teacher.model)
    teacher_dir = teacher_model_dir(teacher, pairs, teacher_fingerprints)
    record_teacher(teacher_dir, teacher)
    scores = score_teacher(pairs, teacher_dir, teacher, teacher_fingerprints)
    model_dir, training_log = distill_cross_encoder(scores, teacher_dir, distillation,
                                                    role_fingerprints("student_base", distillation.student))
    metrics, comparison, stats = compare_teacher_student(teacher_dir, model_dir, eval_set, eval_run, evaluation,
                                                         distillation.training.max_length)
    decision = ranking_gate(metrics, comparison, "student", fingerprints, evaluation, retrieval, promotion,
                            {"teacher": teacher.model, "student_base": distillation.student})
    build_ranking_report(comparison, training_log, stats, decision, fingerprints, evaluation,
                         title="Cross-encoder distillation")


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def dual_encoder_distillation(
    data: RankingDataParams,
    teacher: TeacherParams,
    retrieval: RetrievalParams = RetrievalParams(),
    mining: MiningParams = MiningParams(),
    distillation: DualEncoderDistillationParams = DualEncoderDistillationParams(),
    evaluation: RankingEvalParams = RankingEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """Dual- or cross-encoder teacher scores (cached) → smaller bi-encoder student (MarginMSE or KL) → gate."""
    fingerprints = fingerprint_sources(data)
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    teacher_fingerprints = role_fingerprints("teacher", teacher.model)
    teacher_dir = teacher_model_dir(teacher, pairs, teacher_fingerprints)
    record_teacher(teacher_dir, teacher)
    scores = score_teacher(pairs, teacher_dir, teacher, teacher_fingerprints)
    student_base = "teacher" if distillation.from_teacher else distillation.student.model
    model_dir, training_log = distill_dual_encoder(scores, teacher_dir, distillation,
                                                   role_fingerprints("student_base", student_base))
    metrics, comparison, stats = compare_teacher_student(teacher_dir, model_dir, eval_set, eval_run, evaluation,
                                                         distillation.student.training.max_length)
    decision = ranking_gate(metrics, comparison, "student", fingerprints, evaluation, retrieval, promotion,
                            {"teacher": teacher.model, "student_base": distillation.student.model})
    build_ranking_report(comparison, training_log, stats, decision, fingerprints, evaluation,
                         title="Dual-encoder distillation")


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def ranking_curriculum(
    data: RankingDataParams,
    curriculum: CurriculumParams,
    retrieval: RetrievalParams = RetrievalParams(),
    mining: MiningParams = MiningParams(),
    cross_encoder: CrossEncoderParams = CrossEncoderParams(),
    evaluation: RankingEvalParams = RankingEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """Penha & Hauff curricula vs standard training: per-query difficulty (cached per function) → one model per
    arm, same seed and steps → ranx with paired tests against standard training → best model through the gate."""
    fingerprints = fingerprint_sources(data)
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    max_length = cross_encoder.training.max_length
    base = role_fingerprints("base_model", cross_encoder.model)
    standard = train_cross_encoder_curriculum(pairs, cross_encoder, model_fingerprints=base, id=f"train_{STANDARD}")
    semantic = None
    if "semantic_std" in curriculum.difficulties:  # the one difficulty function that loads a model spec (an encoder)
        semantic = role_fingerprints("semantic_model", curriculum.semantic_model)
    scores = {
        name: score_difficulty(pairs, curriculum.difficulty_params(name, retrieval, max_length),
                               model_dir=standard[0] if name in NEEDS_TRAINED_MODEL else None,
                               model_fingerprints=semantic if name == "semantic_std" else None,
                               id=f"score_difficulty_{name}")
        for name in curriculum.difficulties
    }
    trained = {STANDARD: standard}
    for arm in curriculum.arms:
        trained[arm.name] = train_cross_encoder_curriculum(
            pairs, cross_encoder, arm=arm, difficulty_scores=scores[arm.difficulty], c0=curriculum.c0,
            full_data_fraction=curriculum.full_data_fraction, seed=curriculum.seed, model_fingerprints=base,
            id=f"train_{arm.name}")
    names = list(trained)
    runs = [rerank_candidates(trained[name][0], eval_set, eval_run, evaluation, max_length, id=f"rerank_{name}")[0]
            for name in names]
    metrics, comparison, best = evaluate_curricula(eval_set, eval_run, runs, names, evaluation)
    select_best_model([trained[name][0] for name in names], names, best)
    decision = ranking_gate(metrics, comparison, best, fingerprints, evaluation, retrieval, promotion,
                            {"base_model": cross_encoder.model}, after="select_best_model")
    build_curriculum_report(comparison, [trained[name][1] for name in names],
                            [trained[name][2] for name in names], names, best, decision, evaluation)
