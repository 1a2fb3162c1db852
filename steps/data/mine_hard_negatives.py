from typing import Annotated

import pandas as pd
from zenml import step

from finetune.data.types import RankingSet, TrecRun
from finetune.params import MiningParams
from finetune.ranking.cross_encoder import mine_hard_negatives as mine
from steps.metadata import record


@step
def mine_hard_negatives(
    train_set: RankingSet, train_first_stage_run: TrecRun, mining: MiningParams
) -> Annotated[pd.DataFrame, "train_pairs"]:
    """Each judged positive with hard negatives from its query's first-stage ranking."""
    pairs = mine(train_set, train_first_stage_run.scores, mining)
    record({
        "groups": int(pairs["group"].nunique()) if len(pairs) else 0,
        "rows": len(pairs),
        "queries": int(pairs["qid"].nunique()) if len(pairs) else 0,
    })
    return pairs
