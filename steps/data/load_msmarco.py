from typing import Annotated

from zenml import step

from finetune.data.ranking import load_ranking_data
from finetune.data.types import RankingSet
from finetune.params import RankingDataParams
from steps.metadata import record


@step
def load_msmarco(
    data: RankingDataParams, source_fingerprints: dict[str, str]
) -> tuple[Annotated[RankingSet, "train_set"], Annotated[RankingSet, "eval_set"]]:
    """Parse the sources and split them into disjoint train and evaluation queries.

    ``source_fingerprints`` is an input only so the cache key follows the bytes on disk.
    """
    train_set, eval_set = load_ranking_data(data)
    overlap = set(train_set.queries) & set(eval_set.queries)
    if overlap:
        raise ValueError(f"train and eval queries overlap: {sorted(overlap)[:5]}")
    record({
        "train_counts": train_set.counts(),
        "eval_counts": eval_set.counts(),
        "fingerprints": source_fingerprints,
    })
    return train_set, eval_set
