"""In-memory types shared by the ranking loaders, retrievers, trainers and metrics.

Ids are strings everywhere (MS MARCO ids are integers on disk; ranx and TREC tools key by string).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Qrels = dict[str, dict[str, int]]
"""qid -> pid -> graded relevance (0 = judged non-relevant)."""

Run = dict[str, dict[str, float]]
"""qid -> pid -> score (higher is better); ranks follow from the scores."""


class DataFormatError(ValueError):
    """A malformed input file; the message is one line: ``<path>:<line>: <what is wrong>``."""


@dataclass
class RankingSet:
    """One ranking data set: a passage collection, queries, graded judgments and an optional first-stage run.

    Attributes:
        name: Human-readable name (shown in metadata and reports).
        corpus: pid -> passage text: a dict, or for collection files a
            :class:`~finetune.data.collection.Collection` that reads the texts from the file when asked.
        queries: qid -> query text.
        qrels: Graded judgments for (a subset of) the queries.
        run: Candidate lists from a first stage (e.g. an official BM25 run file), or None.
        fingerprints: File path (or hub reference) -> sha256 of the bytes that were read.
    """

    name: str
    corpus: Mapping[str, str]
    queries: dict[str, str]
    qrels: Qrels
    run: Run | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)

    def subset(self, qids: Iterable[str], name: str | None = None) -> RankingSet:
        """The same collection restricted to the given queries (their qrels and run entries)."""
        keep = [q for q in qids if q in self.queries]
        return RankingSet(
            name=name or self.name,
            corpus=self.corpus,
            queries={q: self.queries[q] for q in keep},
            qrels={q: self.qrels[q] for q in keep if q in self.qrels},
            run=None if self.run is None else {q: self.run[q] for q in keep if q in self.run},
            fingerprints=dict(self.fingerprints),
        )

    def counts(self) -> dict[str, int]:
        """Record counts for metadata: passages, queries, judged queries, judgments, run entries."""
        return {
            "passages": len(self.corpus),
            "queries": len(self.queries),
            "judged_queries": len(self.qrels),
            "judgments": sum(len(v) for v in self.qrels.values()),
            "run_entries": 0 if self.run is None else sum(len(v) for v in self.run.values()),
        }


@dataclass
class TrecRun:
    """A named ranking, stored as a TREC run file (``qid Q0 pid rank score tag``) by the pipeline.

    Attributes:
        name: The run tag (``bm25``, ``cross_encoder``); also the column name in reports.
        scores: qid -> pid -> score.
    """

    name: str
    scores: Run
