"""Ranking pipelines."""

from zenml import Model, pipeline
from zenml.enums import ExecutionMode

from finetune.curriculum import STANDARD
from finetune.params import (
    CrossEncoderDistillationParams,
    CrossEncoderParams,
    CurriculumParams,
    DenseEvalParams,
    DualEncoderDistillationParams,
    DualEncoderTrainingParams,
    FusionParams,
    MiningParams,
    PromotionParams,
    RankingDataParams,
    RankingEvalParams,
    RegisteredModel,
    RetrievalParams,
    TeacherParams,
)
from finetune.promotion import parent_specs
from finetune.ranking.curriculum import NEEDS_TRAINED_MODEL
from finetune.ranking.evaluation import STARTING_POINT, metric_key, vs_key
from steps.data.fingerprint_sources import fingerprint_sources
from steps.data.load_msmarco import load_msmarco
from steps.data.mine_hard_negatives import mine_hard_negatives
from steps.data.retrieve_first_stage import retrieve_first_stage
from steps.data.retrieve_unlabeled_candidates import retrieve_unlabeled_candidates
from steps.data.score_difficulty import score_difficulty
from steps.data.score_teacher import score_teacher
from steps.evaluate.build_curriculum_report import build_curriculum_report
from steps.evaluate.build_ranking_report import build_ranking_report
from steps.evaluate.compare_teacher_student import compare_teacher_student
from steps.evaluate.evaluate_curricula import evaluate_curricula
from steps.evaluate.evaluate_dual_encoder import evaluate_dual_encoder
from steps.evaluate.evaluate_reranker import evaluate_reranker
from steps.evaluate.fuse_scores import fuse_scores
from steps.evaluate.rerank_candidates import rerank_candidates
from steps.evaluate.rerank_starting_point import rerank_starting_point
from steps.registry.fingerprint_models import fingerprint_models
from steps.registry.hooks import discard_model_version_on_failure
from steps.registry.promote_model import promote_model
from steps.registry.record_teacher import record_teacher
from steps.registry.select_best_model import select_best_model
from steps.train.distill_cross_encoder import distill_cross_encoder
from steps.train.distill_dual_encoder import distill_dual_encoder
from steps.train.load_teacher_model import load_teacher_model
from steps.train.train_cross_encoder import train_cross_encoder
from steps.train.train_cross_encoder_curriculum import train_cross_encoder_curriculum
from steps.train.train_dual_encoder import train_dual_encoder


def role_fingerprints(role: str, spec):
    """``fingerprint_models`` of one model role as step ``fingerprint_<role>``, the extra input of every step that
    loads that model: one artifact per role, so each step is keyed on its own model only (a new student does not
    re-run the teacher's scoring)."""
    return fingerprint_models(parent_specs({role: spec}), id=f"fingerprint_{role}")


def ranking_gate(metrics, comparison, candidate_run, fingerprints, evaluation: RankingEvalParams,
                 retrieval: RetrievalParams, promotion: PromotionParams, parents: dict,
                 has_starting_point: bool = False, **options):
    """``promote_model`` for a ranking candidate: the primary metric against the baselines ``promotion.baseline``
    names (the first stage, the untrained starting model, or both) and production, paired on the per-query values
    of ``candidate_run`` in the ranx comparison; ``parents`` are model specs."""
    primary = evaluation.primary_metric
    if promotion.baseline != "first_stage" and not has_starting_point:
        raise ValueError(f"promotion.baseline: {promotion.baseline!r} needs a starting-point evaluation, which this "
                         "pipeline does not run (its student starts from its teacher); use 'first_stage'")
    first = None if promotion.baseline == "starting_point" else metric_key(primary, retrieval.first_stage)
    start = {} if promotion.baseline == "first_stage" else {
        metric_key(primary, STARTING_POINT): f"significant_{vs_key(primary, STARTING_POINT)}"}
    decision, _ = promote_model(
        metrics, fingerprints, promotion, metric_key(primary), [], baseline_metric=first, extra_baselines=start,
        comparison=comparison, candidate_run=candidate_run, parents=parent_specs(parents), **options)
    return decision


def cross_encoder_steps(fingerprints, data: RankingDataParams, retrieval: RetrievalParams, mining: MiningParams,
                        cross_encoder: CrossEncoderParams, evaluation: RankingEvalParams, promotion: PromotionParams,
                        train=train_cross_encoder, teacher: TeacherParams | None = None,
                        fusion: FusionParams | None = None):
    """Everything in ``cross_encoder_training`` after the fingerprints (``retraining`` reuses it).

    ``train(pairs, cross_encoder, model_fingerprints) -> (model_dir, training_log)`` is the training step; the
    multi-GPU variant (pipelines/multi_gpu.py) passes its staged ``run_with_accelerate`` step instead. With a
    ``teacher``, the model learns the teacher's scores of the mined groups and of the unlabeled queries'
    candidates instead (``distill_cross_encoder`` with all layers kept).
    """
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    base = role_fingerprints("base_model", cross_encoder.model)
    if teacher is None:
        no_unlabeled_without_teacher(data, "cross_encoder_training without a teacher")
        model_dir, training_log = train(pairs, cross_encoder, base)
    else:
        scores, teacher_dir = teacher_scores(data, teacher, train_set, eval_set, retrieval, pairs, fingerprints)
        model_dir, training_log = distill_cross_encoder(scores, teacher_dir, cross_encoder.as_student(), base)
    max_length = cross_encoder.training.max_length
    reranked, stats = rerank_candidates(model_dir, eval_set, eval_run, evaluation, max_length)
    start, _ = rerank_starting_point(cross_encoder.model.model_dump(mode="json"), pairs, eval_set, eval_run,
                                     evaluation, max_length, base)
    fused = None if fusion is None else fuse_scores(reranked, eval_run, start, fusion)
    metrics, comparison = evaluate_reranker(eval_set, eval_run, reranked, evaluation, start, fused)
    parents = ({"base_model": cross_encoder.model} | ({} if teacher is None else {"teacher": teacher.model})
               | ensemble_parents(teacher))
    decision = ranking_gate(metrics, comparison, "cross_encoder" if fusion is None else "fused", fingerprints,
                            evaluation, retrieval, promotion, parents, has_starting_point=True)
    build_ranking_report(comparison, training_log, stats, decision, fingerprints, evaluation)


def no_unlabeled_without_teacher(data: RankingDataParams, pipeline: str) -> None:
    """Refuse ``data.unlabeled`` where no teacher labels it (before any step runs)."""
    if data.unlabeled is not None:
        raise ValueError(f"data.unlabeled: {pipeline} has no teacher to label queries without judgments; use "
                         "cross_encoder_training with a teacher, or a distillation pipeline")


def embedding_needs_dual_teacher(teacher: TeacherParams, distillation: DualEncoderDistillationParams) -> None:
    """Refuse ``embedding_mse`` with a cross-encoder teacher spec (before any step runs; a registered teacher's
    architecture is checked by ``distill_dual_encoder``)."""
    if (distillation.student.loss == "embedding_mse" and teacher.architecture == "cross_encoder"
            and not isinstance(teacher.model, RegisteredModel)):
        raise ValueError("distillation.student.loss: embedding_mse learns a dual-encoder teacher's embeddings; "
                         "teacher.architecture is cross_encoder (use margin_mse or kl)")


def teacher_scores(data: RankingDataParams, teacher: TeacherParams, train_set, eval_set, retrieval, pairs,
                   fingerprints):
    """``teacher_scores`` (cached) of the mined groups and, with ``data.unlabeled``, of the unlabeled queries'
    BM25 candidates; returns (scores, teacher model directory)."""
    unlabeled = None
    if data.unlabeled is not None:
        unlabeled = retrieve_unlabeled_candidates(data, train_set, eval_set, retrieval, fingerprints)
    teacher_fingerprints = role_fingerprints("teacher", teacher.model)
    teacher_dir = teacher_model_dir(teacher, pairs, teacher_fingerprints)
    record_teacher(teacher_dir, teacher)
    members = None
    if teacher.ensemble:
        members = fingerprint_models(parent_specs(ensemble_parents(teacher)), id="fingerprint_teacher_ensemble")
    return score_teacher(pairs, teacher_dir, teacher, teacher_fingerprints, unlabeled, members), teacher_dir


def ensemble_parents(teacher: TeacherParams | None) -> dict:
    """The teacher ensemble's members by role (``teacher_ensemble_<i>``) for fingerprints and the model version."""
    members = () if teacher is None else teacher.ensemble
    return {f"teacher_ensemble_{i}": member.model for i, member in enumerate(members)}


def no_teacher_ensemble(teacher: TeacherParams, pipeline: str) -> None:
    """Refuse ``teacher.ensemble`` where the teacher is also compared with its student (before any step runs)."""
    if teacher.ensemble:
        raise ValueError(f"teacher.ensemble: {pipeline} compares the student with its teacher, a single model; "
                         "fuse scorers in cross_encoder_training's teacher instead")


def dual_encoder_steps(fingerprints, data: RankingDataParams, retrieval: RetrievalParams, mining: MiningParams,
                       dual_encoder: DualEncoderTrainingParams, dense: DenseEvalParams, evaluation: RankingEvalParams,
                       promotion: PromotionParams):
    """Everything in ``dual_encoder_training`` after the fingerprints (``retraining`` reuses it)."""
    no_unlabeled_without_teacher(data, "dual_encoder_training")
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    base = role_fingerprints("base_model", dual_encoder.model)
    model_dir, training_log = train_dual_encoder(pairs, dual_encoder, base)
    metrics, comparison, stats = evaluate_dual_encoder(model_dir, eval_set, eval_run, evaluation, dense,
                                                       dual_encoder.training.max_length,
                                                       dual_encoder.model.model_dump(mode="json"), pairs, base)
    candidate = "dense" if dense.primary == "retrieval" else "rerank"
    decision = ranking_gate(metrics, comparison, candidate, fingerprints, evaluation, retrieval, promotion,
                            {"base_model": dual_encoder.model}, has_starting_point=True)
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
    teacher: TeacherParams | None = None,
    fusion: FusionParams | None = None,
) -> None:
    """MonoBERT reranking: BM25 top-k → hard negatives (+ teacher scores, + unlabeled queries) → cross-encoder →
    rerank held-out queries beside the untrained starting model (→ score fusion) → ranx → gate."""
    cross_encoder_steps(fingerprint_sources(data), data, retrieval, mining, cross_encoder, evaluation, promotion,
                        teacher=teacher, fusion=fusion)


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def dual_encoder_training(
    data: RankingDataParams,
    retrieval: RetrievalParams = RetrievalParams(),
    mining: MiningParams = MiningParams(),
    dual_encoder: DualEncoderTrainingParams = DualEncoderTrainingParams(),
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
    no_teacher_ensemble(teacher, "cross_encoder_distillation")
    fingerprints = fingerprint_sources(data)
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    scores, teacher_dir = teacher_scores(data, teacher, train_set, eval_set, retrieval, pairs, fingerprints)
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
    """Dual- or cross-encoder teacher scores (cached) → smaller bi-encoder student (MarginMSE, KL, or the dual-encoder
    teacher's embeddings) → gate."""
    no_teacher_ensemble(teacher, "dual_encoder_distillation")
    embedding_needs_dual_teacher(teacher, distillation)
    fingerprints = fingerprint_sources(data)
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    scores, teacher_dir = teacher_scores(data, teacher, train_set, eval_set, retrieval, pairs, fingerprints)
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
    arm, same seed and steps → ranx with paired tests against standard training, beside the untrained starting
    model (``zero_shot``) → best model through the gate."""
    no_unlabeled_without_teacher(data, "ranking_curriculum")
    fingerprints = fingerprint_sources(data)
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    max_length = cross_encoder.training.max_length
    base = role_fingerprints("base_model", cross_encoder.model)
    # Arm name -> that training step's outputs, standard training first; every dict keeps the arms' order.
    model_dirs, training_logs, data_fractions = {}, {}, {}
    model_dirs[STANDARD], training_logs[STANDARD], data_fractions[STANDARD] = train_cross_encoder_curriculum(
        pairs, cross_encoder, model_fingerprints=base, id=f"train_{STANDARD}")
    semantic = None
    if "semantic_std" in curriculum.difficulties:  # the one difficulty function that loads a model spec (an encoder)
        semantic = role_fingerprints("semantic_model", curriculum.semantic_model)
    scores = {
        name: score_difficulty(pairs, curriculum.difficulty_params(name, retrieval, max_length),
                               model_dir=model_dirs[STANDARD] if name in NEEDS_TRAINED_MODEL else None,
                               model_fingerprints=semantic if name == "semantic_std" else None,
                               id=f"score_difficulty_{name}")
        for name in curriculum.difficulties
    }
    for arm in curriculum.arms:
        model_dirs[arm.name], training_logs[arm.name], data_fractions[arm.name] = train_cross_encoder_curriculum(
            pairs, cross_encoder, arm=arm, difficulty_scores=scores[arm.difficulty], schedule=curriculum.schedule,
            model_fingerprints=base, id=f"train_{arm.name}")
    names = list(model_dirs)
    reranked_runs = []
    for name, model_dir in model_dirs.items():
        reranked_run, _ = rerank_candidates(model_dir, eval_set, eval_run, evaluation, max_length, id=f"rerank_{name}")
        reranked_runs.append(reranked_run)
    start, _ = rerank_starting_point(cross_encoder.model.model_dump(mode="json"), pairs, eval_set, eval_run,
                                     evaluation, max_length, base)
    metrics, comparison, best = evaluate_curricula(eval_set, eval_run, reranked_runs, names, evaluation, start)
    select_best_model(list(model_dirs.values()), names, best)
    decision = ranking_gate(metrics, comparison, best, fingerprints, evaluation, retrieval, promotion,
                            {"base_model": cross_encoder.model}, has_starting_point=True, after="select_best_model")
    build_curriculum_report(comparison, list(training_logs.values()), list(data_fractions.values()), names, best,
                            decision, evaluation)
