"""Ranking pipelines."""

from zenml import pipeline

from finetune.params import (
    CrossEncoderParams,
    CurriculumParams,
    MiningParams,
    PromotionParams,
    RankingDataParams,
    RankingEvalParams,
    RetrievalParams,
)
from finetune.ranking.curriculum import NEEDS_TRAINED_MODEL, STANDARD
from steps.data.fingerprint_sources import fingerprint_sources
from steps.data.load_msmarco import load_msmarco
from steps.data.mine_hard_negatives import mine_hard_negatives
from steps.data.retrieve_first_stage import retrieve_first_stage
from steps.data.score_difficulty import score_difficulty
from steps.evaluate.build_curriculum_report import build_curriculum_report
from steps.evaluate.build_ranking_report import build_ranking_report
from steps.evaluate.evaluate_curricula import evaluate_curricula
from steps.evaluate.evaluate_reranker import evaluate_reranker
from steps.evaluate.rerank_candidates import rerank_candidates
from steps.registry.hooks import discard_model_version_on_failure
from steps.registry.promote_model import promote_model
from steps.registry.select_best_model import select_best_model
from steps.train.train_cross_encoder import train_cross_encoder
from steps.train.train_cross_encoder_curriculum import train_cross_encoder_curriculum


@pipeline(on_failure=discard_model_version_on_failure)
def cross_encoder_training(
    data: RankingDataParams,
    retrieval: RetrievalParams = RetrievalParams(),
    mining: MiningParams = MiningParams(),
    cross_encoder: CrossEncoderParams = CrossEncoderParams(),
    evaluation: RankingEvalParams = RankingEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """MonoBERT reranking: BM25 top-k → hard negatives → cross-encoder → rerank held-out queries → ranx → gate."""
    fingerprints = fingerprint_sources(data)
    train_set, eval_set = load_msmarco(data, fingerprints)
    train_run, eval_run = retrieve_first_stage(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives(train_set, train_run, mining)
    model_dir, training_log = train_cross_encoder(pairs, cross_encoder)
    reranked, stats = rerank_candidates(model_dir, eval_set, eval_run, evaluation, cross_encoder.training.max_length)
    metrics, comparison = evaluate_reranker(eval_set, eval_run, reranked, evaluation)
    decision = promote_model(metrics, evaluation, promotion, baseline=retrieval.first_stage)
    build_ranking_report(comparison, training_log, stats, decision, fingerprints, evaluation)


@pipeline(on_failure=discard_model_version_on_failure)
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
    standard = train_cross_encoder_curriculum(pairs, cross_encoder, id=f"train_{STANDARD}")
    scores = {
        name: score_difficulty(pairs, curriculum.difficulty_params(name, retrieval, max_length),
                               model_dir=standard[0] if name in NEEDS_TRAINED_MODEL else None,
                               id=f"score_difficulty_{name}")
        for name in curriculum.difficulties
    }
    trained = {STANDARD: standard}
    for arm in curriculum.arms:
        trained[arm.name] = train_cross_encoder_curriculum(
            pairs, cross_encoder, arm=arm, difficulty_scores=scores[arm.difficulty], c0=curriculum.c0,
            full_data_fraction=curriculum.full_data_fraction, seed=curriculum.seed, id=f"train_{arm.name}")
    names = list(trained)
    runs = [rerank_candidates(trained[name][0], eval_set, eval_run, evaluation, max_length, id=f"rerank_{name}")[0]
            for name in names]
    metrics, comparison, best = evaluate_curricula(eval_set, eval_run, runs, names, evaluation)
    select_best_model([trained[name][0] for name in names], names, best)
    decision = promote_model(metrics, evaluation, promotion, baseline=retrieval.first_stage,
                             after="select_best_model")
    build_curriculum_report(comparison, [trained[name][1] for name in names],
                            [trained[name][2] for name in names], names, best, decision, evaluation)
