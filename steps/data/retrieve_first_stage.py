from typing import Annotated

from zenml import step

from finetune.data.types import RankingSet, TrecRun
from finetune.params import RetrievalParams
from finetune.ranking.first_stage import first_stage_runs
from steps.metadata import record


@step
def retrieve_first_stage(
    train_set: RankingSet, eval_set: RankingSet, retrieval: RetrievalParams
) -> tuple[Annotated[TrecRun, "train_first_stage_run"], Annotated[TrecRun, "eval_first_stage_run"]]:
    """BM25 top-k (bm25s) for training and evaluation queries, or the sources' own run files."""
    train_run, eval_run = first_stage_runs(train_set, eval_set, retrieval)
    record({"first_stage": train_run.name, "k": retrieval.k})
    return train_run, eval_run
