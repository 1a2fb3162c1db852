from dataclasses import asdict
from typing import Annotated

from zenml import step

from finetune.data.types import RankingSet, TrecRun
from finetune.params import RankingEvalParams
from finetune.ranking.evaluation import comparison_metrics
from finetune.ranking.metrics import compare_runs
from steps.metadata import record


@step
def evaluate_reranker(
    eval_set: RankingSet,
    eval_first_stage_run: TrecRun,
    reranked_run: TrecRun,
    evaluation: RankingEvalParams,
) -> tuple[Annotated[dict[str, float], "metrics"], Annotated[dict, "comparison"]]:
    """ranx metrics of the reranker and the first stage on the held-out queries, with a paired test."""
    comparison = compare_runs(
        eval_set.qrels,
        {eval_first_stage_run.name: eval_first_stage_run.scores, reranked_run.name: reranked_run.scores},
        metrics=list(evaluation.metrics),
        baseline=eval_first_stage_run.name,
        stat_test=evaluation.stat_test,
        alpha=evaluation.alpha,
        relevance_level=evaluation.relevance_level,
    )
    metrics = comparison_metrics(comparison, candidate=reranked_run.name, baseline=eval_first_stage_run.name)
    record(metrics)
    return metrics, asdict(comparison)
