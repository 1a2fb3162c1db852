from dataclasses import asdict
from typing import Annotated

from zenml import step

from finetune.data.types import RankingSet, TrecRun
from finetune.params import RankingEvalParams
from finetune.ranking.evaluation import comparison_metrics, metric_key, versus_metrics
from finetune.ranking.metrics import compare_runs
from steps.metadata import record


@step
def evaluate_reranker(
    eval_set: RankingSet,
    eval_first_stage_run: TrecRun,
    reranked_run: TrecRun,
    evaluation: RankingEvalParams,
    starting_point_run: TrecRun | None = None,
    fused_run: TrecRun | None = None,
) -> tuple[Annotated[dict[str, float], "metrics"], Annotated[dict, "comparison"]]:
    """ranx metrics of the reranker and the first stage on the held-out queries, with a paired test.

    With ``starting_point_run``, also the untrained starting model and the candidate's paired test against it.
    With ``fused_run`` the fused scores are the candidate (``test_<metric>``) and the reranker alone is reported
    as ``<reranker>_test_<metric>``.
    """
    candidate = fused_run or reranked_run
    runs = {eval_first_stage_run.name: eval_first_stage_run.scores}
    for extra in (starting_point_run, reranked_run if fused_run is not None else None):
        if extra is not None:
            runs[extra.name] = extra.scores
    comparison = compare_runs(
        eval_set.qrels,
        {**runs, candidate.name: candidate.scores},
        metrics=list(evaluation.metrics),
        baseline=eval_first_stage_run.name,
        stat_test=evaluation.stat_test,
        alpha=evaluation.alpha,
        relevance_level=evaluation.relevance_level,
    )
    metrics = comparison_metrics(comparison, candidate=candidate.name, baseline=eval_first_stage_run.name)
    if starting_point_run is not None:
        metrics.update(versus_metrics(comparison, candidate.name, starting_point_run.name, evaluation.stat_test,
                                      evaluation.alpha))
    if fused_run is not None:
        for metric in evaluation.metrics:
            metrics[metric_key(metric, reranked_run.name)] = comparison.means[reranked_run.name][metric]
            metrics[f"p_value_{metric_key(metric, reranked_run.name)}"] = \
                comparison.p_values[reranked_run.name][metric]
    record(metrics)
    return metrics, asdict(comparison)
