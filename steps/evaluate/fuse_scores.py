from typing import Annotated

from zenml import step

from finetune.data.types import TrecRun
from finetune.params import FusionParams
from finetune.ranking.fusion import fuse
from steps.metadata import record


@step
def fuse_scores(
    reranked_run: TrecRun,
    eval_first_stage_run: TrecRun,
    starting_point_run: TrecRun,
    fusion: FusionParams,
) -> Annotated[TrecRun, "fused_run"]:
    """The reranker's scores interpolated with the first stage's and the starting model's (min-max per query)."""
    run = fuse([(reranked_run.scores, fusion.reranker), (eval_first_stage_run.scores, fusion.first_stage),
                (starting_point_run.scores, fusion.starting_point)])
    record({"weights": {reranked_run.name: fusion.reranker, eval_first_stage_run.name: fusion.first_stage,
                        starting_point_run.name: fusion.starting_point}})
    return TrecRun("fused", run)
