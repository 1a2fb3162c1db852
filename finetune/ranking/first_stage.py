"""The first-stage ranking that training mines negatives from and evaluation reranks."""

from __future__ import annotations

from finetune.data.types import DataFormatError, RankingSet, TrecRun
from finetune.params import RetrievalParams
from finetune.ranking.bm25 import BM25Index


def first_stage_runs(train_set: RankingSet, eval_set: RankingSet, params: RetrievalParams) -> tuple[TrecRun, TrecRun]:
    """Top-``k`` candidates for the training and the evaluation queries.

    ``bm25`` indexes each distinct collection once (a seeded split shares one collection, so one index);
    ``source_run`` uses the run files that came with the sources, truncated to ``k``.

    Raises:
        DataFormatError: ``source_run`` was chosen but a source has no run file.
    """
    if params.first_stage == "source_run":
        runs = []
        for data in (train_set, eval_set):
            if data.run is None:
                raise DataFormatError(f"{data.name}: retrieval.first_stage is 'source_run' but the source has no run")
            runs.append(TrecRun("source_run", {
                q: dict(sorted(data.run[q].items(), key=lambda kv: (-kv[1], kv[0]))[: params.k])
                for q in data.queries if q in data.run
            }))
        return runs[0], runs[1]
    index = BM25Index(train_set.corpus, k1=params.k1, b=params.b, stemmer=params.stemmer)
    eval_index = index if eval_set.corpus is train_set.corpus else BM25Index(
        eval_set.corpus, k1=params.k1, b=params.b, stemmer=params.stemmer)
    return (
        TrecRun("bm25", index.retrieve(train_set.queries, k=params.k)),
        TrecRun("bm25", eval_index.retrieve(eval_set.queries, k=params.k)),
    )
