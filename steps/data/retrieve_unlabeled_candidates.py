from typing import Annotated

import pandas as pd
from zenml import step

from finetune.data.ranking import load_unlabeled_queries
from finetune.data.types import RankingSet
from finetune.params import RankingDataParams, RetrievalParams
from finetune.ranking.bm25 import BM25Index
from finetune.ranking.cross_encoder import candidate_groups
from steps.metadata import record


@step
def retrieve_unlabeled_candidates(
    data: RankingDataParams,
    train_set: RankingSet,
    eval_set: RankingSet,
    retrieval: RetrievalParams,
    source_fingerprints: dict[str, str],  # cache key only: the unlabeled file's bytes are among them
) -> Annotated[pd.DataFrame, "unlabeled_candidates"]:
    """Queries without judgments (``data.unlabeled``) with BM25's top ``depth`` over the training collection,
    one group per query, for the teacher to score (no run file exists for them, so always BM25)."""
    if data.unlabeled is None:
        raise ValueError("data.unlabeled is not set: there are no unlabeled queries to retrieve candidates for")
    unlabeled = load_unlabeled_queries(data.unlabeled, train_set, eval_set)
    index = BM25Index(train_set.corpus, k1=retrieval.k1, b=retrieval.b, stemmer=retrieval.stemmer)
    run = index.retrieve(unlabeled.queries, k=data.unlabeled.depth)
    candidates = candidate_groups(unlabeled, run, data.unlabeled.depth)
    record({"unlabeled_queries": len(unlabeled.queries), "groups": int(candidates["group"].nunique()),
            "rows": len(candidates), "depth": data.unlabeled.depth})
    return candidates
