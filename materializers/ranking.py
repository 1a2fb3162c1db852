"""Ranking data sets and runs in the formats IR people already read: TSV, TREC qrels and TREC run files.

Ids may be any string here (the triples source derives ids from text), so reading back uses a plain split
rather than the strict MS MARCO loaders, which check that ids are integers.
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from finetune.data.types import RankingSet, TrecRun


def _write_lines(path: str, lines) -> None:
    with fileio.open(path, "w") as f:
        f.write("".join(lines))


def _read_rows(path: str, maxsplit: int) -> list[list[str]]:
    with fileio.open(path, "r") as f:
        text = f.read()
    if maxsplit == 1:  # TSV with free text in the second column
        return [line.split("\t", 1) for line in text.splitlines() if line]
    return [line.split() for line in text.splitlines() if line]


def _run_lines(scores: dict[str, dict[str, float]], tag: str):
    for qid in sorted(scores):
        ranked = sorted(scores[qid].items(), key=lambda kv: (-kv[1], kv[0]))
        for rank, (pid, score) in enumerate(ranked, start=1):
            yield f"{qid} Q0 {pid} {rank} {score!r} {tag}\n"


def _read_run(path: str) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for qid, _, pid, _, score, _ in _read_rows(path, 0):
        run.setdefault(qid, {})[pid] = float(score)
    return run


class TrecRunMaterializer(BaseMaterializer):
    """A :class:`TrecRun` as ``run.trec`` (readable by trec_eval, ranx and Pyserini) plus its name."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (TrecRun,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: TrecRun) -> None:
        _write_lines(os.path.join(self.uri, "run.trec"), _run_lines(data.scores, data.name))
        _write_lines(os.path.join(self.uri, "name.txt"), [data.name])

    def load(self, data_type: type[Any]) -> TrecRun:
        with fileio.open(os.path.join(self.uri, "name.txt"), "r") as f:
            name = f.read().strip()
        return TrecRun(name=name, scores=_read_run(os.path.join(self.uri, "run.trec")))

    def extract_metadata(self, data: TrecRun) -> dict[str, Any]:
        return {"queries": len(data.scores), "entries": sum(len(v) for v in data.scores.values())}


class RankingSetMaterializer(BaseMaterializer):
    """A :class:`RankingSet` as ``collection.tsv``, ``queries.tsv``, ``qrels.txt``, optional ``run.trec``."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (RankingSet,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: RankingSet) -> None:
        _write_lines(os.path.join(self.uri, "collection.tsv"),
                     (f"{pid}\t{text}\n" for pid, text in sorted(data.corpus.items())))
        _write_lines(os.path.join(self.uri, "queries.tsv"),
                     (f"{qid}\t{text}\n" for qid, text in sorted(data.queries.items())))
        qrels = ((qid, pid, g) for qid in sorted(data.qrels) for pid, g in sorted(data.qrels[qid].items()))
        _write_lines(os.path.join(self.uri, "qrels.txt"), (f"{qid} 0 {pid} {g}\n" for qid, pid, g in qrels))
        if data.run is not None:
            _write_lines(os.path.join(self.uri, "run.trec"), _run_lines(data.run, "source"))
        meta = {"name": data.name, "fingerprints": data.fingerprints, "has_run": data.run is not None}
        _write_lines(os.path.join(self.uri, "meta.json"), [json.dumps(meta)])

    def load(self, data_type: type[Any]) -> RankingSet:
        with fileio.open(os.path.join(self.uri, "meta.json"), "r") as f:
            meta = json.loads(f.read())
        qrels: dict[str, dict[str, int]] = {}
        for qid, _, pid, grade in _read_rows(os.path.join(self.uri, "qrels.txt"), 0):
            qrels.setdefault(qid, {})[pid] = int(grade)
        return RankingSet(
            name=meta["name"],
            corpus=dict(_read_rows(os.path.join(self.uri, "collection.tsv"), 1)),
            queries=dict(_read_rows(os.path.join(self.uri, "queries.tsv"), 1)),
            qrels=qrels,
            run=_read_run(os.path.join(self.uri, "run.trec")) if meta["has_run"] else None,
            fingerprints=meta["fingerprints"],
        )

    def extract_metadata(self, data: RankingSet) -> dict[str, Any]:
        return {**data.counts(), "name": data.name}

    def save_visualizations(self, data: RankingSet) -> dict[str, VisualizationType]:
        path = os.path.join(self.uri, "summary.md")
        rows = "\n".join(f"| {k} | {v:,} |" for k, v in data.counts().items())
        sample = "\n".join(f"- `{q}` {t[:120]}" for q, t in sorted(data.queries.items())[:5])
        text = f"### {data.name}\n\n| count | value |\n|---|---|\n{rows}\n\nSample queries:\n\n{sample}\n"
        _write_lines(path, [text])
        return {path: VisualizationType.MARKDOWN}
