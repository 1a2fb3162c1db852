"""Ranking data sets and runs in the formats IR people already read: TSV, TREC qrels and TREC run files.

Ids may be any string here (the triples source derives ids from text), so reading back uses a plain split
rather than the strict MS MARCO loaders, which check that ids are integers.

Every file is UTF-8 with ``\\n`` line ends, written and read as bytes and split on ``\\n`` only:
``str.splitlines`` would also split inside a passage at U+0085, U+2028, U+2029, ``\\x0b``, ``\\x0c`` or
``\\x1c``-``\\x1e`` (five dev-small passages hold U+0085), and text-mode reading would turn a ``\\r`` inside a
field into a line end. A field a line cannot hold as it is (a tab, ``\\n`` or ``\\r``; in the space-separated
qrels and run files also a space) makes its file *escaped*: every field of that file is written with the
backslash escapes ``\\\\ \\t \\n \\r \\s``, and ``meta.json`` lists the escaped files (and the queries whose
judgment or candidate list is empty, which have no line of their own). Ordinary data needs no
escape (the 22 backslashes in dev-small passages stay single), so its files stay in the official formats byte
for byte, and any set of strings round-trips exactly. Artifacts written before ``meta.json`` listed escaped
files load as unescaped.

The collection is written a block of lines at a time, and on a local artifact store an official-format
``collection.tsv`` loads as a :class:`~finetune.data.collection.Collection` over that file (pids and byte
offsets in memory, texts on disk), so a step handed the 8.8 M-passage MS MARCO set holds ~30 bytes a passage
rather than a 5 GB dict.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from finetune.data.collection import Collection
from finetune.data.msmarco import read_collection
from finetune.data.types import DataFormatError, RankingSet, TrecRun

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", " ": "\\s"}
_UNESCAPES = {escape[1]: char for char, escape in _ESCAPES.items()}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
# Characters that force a file's escaping, by field separator: a line end, or the separator itself.
_SPECIAL = {"\t": "\t\n\r", " ": " \t\n\r"}
_TABLES = {sep: str.maketrans({c: _ESCAPES[c] for c in "\\" + special}) for sep, special in _SPECIAL.items()}

Row = tuple[str, ...]
_ROWS_PER_WRITE = 10_000  # lines encoded and written at a time


def _write_bytes(path: str, text: str) -> None:
    with fileio.open(path, "wb") as f:
        f.write(text.encode("utf-8"))


def _read_text(path: str) -> str:
    with fileio.open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None


def _write_table(path: str, rows: list[Row] | Callable[[], Iterable[Row]], sep: str) -> bool:
    """Write one line per row, fields joined by ``sep``, escaping the whole file only where a field needs it.

    Args:
        path: The file to write.
        rows: The rows, or a function returning a fresh iterator over them each call (read twice: once to
            decide on escaping, once to write), so that a large collection is never held as a list.
        sep: The field separator.

    Returns:
        Whether the file was written escaped.
    """
    again = rows if callable(rows) else lambda: rows
    special = _SPECIAL[sep]
    escaped = any(c in field for row in again() for field in row for c in special)
    with fileio.open(path, "wb") as f:
        lines = []
        for row in again():
            lines.append(sep.join(field.translate(_TABLES[sep]) for field in row) if escaped else sep.join(row))
            if len(lines) == _ROWS_PER_WRITE:
                f.write(("\n".join(lines) + "\n").encode("utf-8"))
                lines.clear()
        if lines:
            f.write(("\n".join(lines) + "\n").encode("utf-8"))
    return escaped


def _sorted_corpus(corpus: Mapping[str, str]) -> Callable[[], Iterable[Row]]:
    """The corpus's (pid, passage) rows by pid; a :class:`Collection` is walked in its pid order, not listed."""
    if isinstance(corpus, Collection):
        return lambda: ((corpus.ids[i].decode("utf-8"), corpus.text_at(i)) for i in corpus.sorted_positions().tolist())
    return lambda: sorted(corpus.items())


def _load_corpus(uri: str, meta: dict[str, Any], escaped: bool) -> Mapping[str, str] | None:
    """The collection as a :class:`Collection` over the artifact's own file, or None to read it as a dict.

    That needs a local, unescaped file that the strict MS MARCO reader reads whole: digit pids and non-blank
    passages, as many as were saved (a record the strict reader would take for a blank line is missing then).
    Otherwise (a remote artifact store, ids from another source, artifacts saved before ``passages`` was
    recorded) the caller reads the file into a dict, as before.
    """
    path = os.path.join(uri, "collection.tsv")
    if escaped or "passages" not in meta or not os.path.isfile(path):
        return None
    try:
        corpus = read_collection(path)
    except DataFormatError:
        return None
    return corpus if len(corpus) == meta["passages"] else None


def _unescape(path: str, lineno: int, field: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match[1] not in _UNESCAPES:
            raise DataFormatError(f"{path}:{lineno}: unknown escape {match[0]!r}")
        return _UNESCAPES[match[1]]

    return _ESCAPE.sub(replace, field)


def _read_table(path: str, sep: str, columns: int, escaped: bool) -> list[Row]:
    """Rows of ``columns`` fields; the last field keeps any further separators (as unescaped files once held)."""
    lines = _read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()  # the last line's own line end
    rows = []
    for lineno, line in enumerate(lines, start=1):
        fields = line.split(sep, columns - 1)
        if len(fields) != columns:
            raise DataFormatError(f"{path}:{lineno}: expected {columns} fields separated by {sep!r}, "
                                  f"found {len(fields)}")
        rows.append(tuple(_unescape(path, lineno, f) for f in fields) if escaped else tuple(fields))
    return rows


def _run_rows(scores: dict[str, dict[str, float]], tag: str) -> list[Row]:
    rows = []
    for qid in sorted(scores):
        ranked = sorted(scores[qid].items(), key=lambda kv: (-kv[1], kv[0]))
        for rank, (pid, score) in enumerate(ranked, start=1):
            rows.append((qid, "Q0", pid, str(rank), repr(float(score)), tag))
    return rows


def _read_run(path: str, escaped: bool) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for qid, _, pid, _, score, _ in _read_table(path, " ", 6, escaped):
        run.setdefault(qid, {})[pid] = float(score)
    return run


def _empty(lists: dict[str, dict]) -> list[str]:
    """The queries whose judgment or candidate list is empty: they have no line in a qrels or run file."""
    return sorted(qid for qid, entries in lists.items() if not entries)


def _read_meta(uri: str) -> dict[str, Any]:
    path = os.path.join(uri, "meta.json")
    return json.loads(_read_text(path)) if fileio.exists(path) else {}


class TrecRunMaterializer(BaseMaterializer):
    """A :class:`TrecRun` as ``run.trec`` (readable by trec_eval, ranx and Pyserini), its name in ``name.txt``."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (TrecRun,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: TrecRun) -> None:
        escaped = _write_table(os.path.join(self.uri, "run.trec"), _run_rows(data.scores, data.name), " ")
        _write_bytes(os.path.join(self.uri, "name.txt"), data.name)
        meta = {"escaped": ["run.trec"] if escaped else [], "empty_run": _empty(data.scores)}
        _write_bytes(os.path.join(self.uri, "meta.json"), json.dumps(meta))

    def load(self, data_type: type[Any]) -> TrecRun:
        meta = _read_meta(self.uri)
        scores = _read_run(os.path.join(self.uri, "run.trec"), "run.trec" in meta.get("escaped", []))
        scores.update({qid: {} for qid in meta.get("empty_run", [])})
        return TrecRun(name=_read_text(os.path.join(self.uri, "name.txt")), scores=scores)

    def extract_metadata(self, data: TrecRun) -> dict[str, Any]:
        return {"queries": len(data.scores), "entries": sum(len(v) for v in data.scores.values())}


class RankingSetMaterializer(BaseMaterializer):
    """A :class:`RankingSet` as ``collection.tsv``, ``queries.tsv``, ``qrels.txt``, optional ``run.trec``."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (RankingSet,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: RankingSet) -> None:
        qrels = [(qid, "0", pid, str(g)) for qid in sorted(data.qrels) for pid, g in sorted(data.qrels[qid].items())]
        tables = {
            "collection.tsv": (_sorted_corpus(data.corpus), "\t"),
            "queries.tsv": (sorted(data.queries.items()), "\t"),
            "qrels.txt": (qrels, " "),
        }
        if data.run is not None:
            tables["run.trec"] = (_run_rows(data.run, "source"), " ")
        escaped = [name for name, (rows, sep) in tables.items()
                   if _write_table(os.path.join(self.uri, name), rows, sep)]
        meta = {"name": data.name, "fingerprints": data.fingerprints, "has_run": data.run is not None,
                "passages": len(data.corpus), "escaped": escaped, "empty_qrels": _empty(data.qrels),
                "empty_run": _empty(data.run or {})}
        _write_bytes(os.path.join(self.uri, "meta.json"), json.dumps(meta))

    def load(self, data_type: type[Any]) -> RankingSet:
        meta = _read_meta(self.uri)
        escaped = set(meta.get("escaped", []))

        def rows(name: str, sep: str, columns: int) -> list[Row]:
            return _read_table(os.path.join(self.uri, name), sep, columns, name in escaped)

        qrels: dict[str, dict[str, int]] = {}
        for qid, _, pid, grade in rows("qrels.txt", " ", 4):
            qrels.setdefault(qid, {})[pid] = int(grade)
        qrels.update({qid: {} for qid in meta.get("empty_qrels", [])})
        corpus = _load_corpus(self.uri, meta, "collection.tsv" in escaped)
        if corpus is None:
            corpus = dict(rows("collection.tsv", "\t", 2))
        run = None
        if meta["has_run"]:
            run = _read_run(os.path.join(self.uri, "run.trec"), "run.trec" in escaped)
            run.update({qid: {} for qid in meta.get("empty_run", [])})
        return RankingSet(
            name=meta["name"],
            corpus=corpus,
            queries=dict(rows("queries.tsv", "\t", 2)),
            qrels=qrels,
            run=run,
            fingerprints=meta["fingerprints"],
        )

    def extract_metadata(self, data: RankingSet) -> dict[str, Any]:
        return {**data.counts(), "name": data.name}

    def save_visualizations(self, data: RankingSet) -> dict[str, VisualizationType]:
        path = os.path.join(self.uri, "summary.md")
        rows = "\n".join(f"| {k} | {v:,} |" for k, v in data.counts().items())
        sample = "\n".join(f"- `{q}` {t[:120]}" for q, t in sorted(data.queries.items())[:5])
        _write_bytes(path, f"### {data.name}\n\n| count | value |\n|---|---|\n{rows}\n\nSample queries:\n\n{sample}\n")
        return {path: VisualizationType.MARKDOWN}
