from typing import Annotated

from zenml import step

from finetune.data.types import RankingSet, TrecRun
from finetune.models.directory import ModelDirectory
from finetune.params import RankingEvalParams
from finetune.ranking.cross_encoder import rerank
from steps.metadata import record


@step
def rerank_candidates(
    model_dir: ModelDirectory,
    eval_set: RankingSet,
    eval_first_stage_run: TrecRun,
    evaluation: RankingEvalParams,
    max_length: int,
) -> tuple[Annotated[TrecRun, "reranked_run"], Annotated[dict[str, float], "rerank_stats"]]:
    """Score each evaluation query's top-k first-stage candidates with the trained cross-encoder."""
    result = rerank(model_dir.path, eval_set, eval_first_stage_run.scores, depth=evaluation.rerank_depth,
                    batch_size=evaluation.batch_size, max_length=max_length, precision=evaluation.precision)
    stats = {"pairs_scored": float(result.pairs_scored), "seconds": round(result.seconds, 3),
             "docs_per_second": round(result.docs_per_second, 1)}
    record({**stats, "precision": evaluation.precision})
    return TrecRun("cross_encoder", result.run), stats
