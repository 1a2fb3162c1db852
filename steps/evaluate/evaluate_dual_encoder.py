from dataclasses import asdict
from typing import Annotated

from zenml import step

from finetune.data.types import RankingSet, TrecRun
from finetune.models.directory import ModelDirectory
from finetune.params import DenseEvalParams, RankingEvalParams
from finetune.ranking.dual_encoder import evaluate_dense
from steps.metadata import record


@step
def evaluate_dual_encoder(
    model_dir: ModelDirectory,
    eval_set: RankingSet,
    eval_first_stage_run: TrecRun,
    evaluation: RankingEvalParams,
    dense: DenseEvalParams,
    max_length: int,
) -> tuple[
    Annotated[dict[str, float], "metrics"], Annotated[dict, "comparison"], Annotated[dict[str, float], "rerank_stats"]
]:
    """Dense retrieval over the whole corpus and reranking of the first stage, each tested against it (ranx)."""
    comparison, metrics, stats = evaluate_dense(model_dir.path, eval_set, eval_first_stage_run.scores,
                                                eval_first_stage_run.name, evaluation, dense, max_length)
    record({**metrics, **stats})
    return metrics, asdict(comparison), stats
