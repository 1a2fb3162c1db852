"""Ranking pipelines."""

from zenml import pipeline

from finetune.params import (
    CrossEncoderParams,
    MiningParams,
    PromotionParams,
    RankingDataParams,
    RankingEvalParams,
    RetrievalParams,
)
from steps.data.fingerprint_sources import fingerprint_sources
from steps.data.load_msmarco import load_msmarco
from steps.data.mine_hard_negatives import mine_hard_negatives
from steps.data.retrieve_first_stage import retrieve_first_stage
from steps.evaluate.build_ranking_report import build_ranking_report
from steps.evaluate.evaluate_reranker import evaluate_reranker
from steps.evaluate.rerank_candidates import rerank_candidates
from steps.registry.hooks import discard_model_version_on_failure
from steps.registry.promote_model import promote_model
from steps.train.train_cross_encoder import train_cross_encoder


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
