"""The official MS MARCO passage-ranking file formats, read strictly and written exactly.

Formats (UTF-8, one record per line, ``\\n`` or ``\\r\\n`` line ends, no header):

- collection: ``pid<TAB>passage``
- queries: ``qid<TAB>query``
- qrels (TREC): ``qid iter pid grade``, whitespace separated; ``iter`` is ignored (``0`` in MS MARCO,
  ``Q0`` in the TREC DL files); grades are graded (0 = judged non-relevant, up to 3 in TREC DL).
- run (TREC): ``qid Q0 pid rank score tag``, whitespace separated.
- triples: ``query<TAB>positive passage<TAB>negative passage``.

Every reader raises :class:`DataFormatError` whose message is one line, ``<path>:<line>: <what is wrong>``
(line numbers are 1-based), so a bad line in a 3 GB collection is found with ``sed -n <line>p``. Blank lines
at the end of a file are ignored; a blank line followed by data is an error. Ids are digit strings kept
exactly as written, so writing what was read reproduces the file byte for byte.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from finetune.data.collection import Collection
from finetune.data.types import DataFormatError, Qrels, RankingSet, Run

logger = logging.getLogger(__name__)

PathLike = str | Path

_ID = re.compile(r"[0-9]+")
_INT = re.compile(r"[+-]?[0-9]+")
# Long enough to recognise the offending value, short enough to keep the message on one screen line.
_SHOWN_CHARS = 40
# What a path of each id<TAB>text format should be, named when it is a directory.
_ID_TEXT_FILES = {"pid": "the collection TSV file", "qid": "the queries TSV file"}


def require_file(path: PathLike, expected: str = "a data file") -> Path:
    """Check that a data source path is a regular file before it is hashed or parsed.

    Every fingerprint and reader goes through here, so a directory or a typo is reported once, the same way.

    Args:
        path: The configured path.
        expected: What the path should be, for the message (``"the collection TSV file"``).

    Returns:
        The path as a ``Path``.

    Raises:
        DataFormatError: ``<path>: is a directory, expected <expected>`` or ``<path>: no such file``.
    """
    path = Path(path)
    if path.is_dir():
        raise DataFormatError(f"{path}: is a directory, expected {expected}")
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    return path


def sha256_file(path: PathLike, expected: str = "a data file") -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks so multi-GB collections stay out of memory.

    Args:
        path: The file to hash.
        expected: What the path should be, named when it is a directory (see :func:`require_file`).

    Returns:
        The 64-character lowercase hex digest.

    Raises:
        DataFormatError: The path is a directory or does not exist (one line naming it).
    """
    require_file(path, expected)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def text_id(text: str) -> str:
    """A deterministic numeric-string id for a text that has none (hub rows, triples files).

    The id is the integer value of the first 15 hex digits of sha1(UTF-8 text): 60 bits, so a collision
    among even 10 million texts has probability below 1e-4 (n²/2⁶¹). It is a digit string like every official
    MS MARCO id, so sets built from id-less sources go through the strict writers and readers unchanged.

    Args:
        text: The query or passage text.

    Returns:
        The id, e.g. ``"1000395063346153737"``.
    """
    return str(int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:15], 16))


# ----------------------------------------------------------------------------------------------- reading


def _show(value: str) -> str:
    """``repr`` of a value, truncated; repr escapes tabs and carriage returns, keeping messages one line."""
    if len(value) > _SHOWN_CHARS:
        value = value[:_SHOWN_CHARS] + "..."
    return repr(value)


def _lines(
    path: PathLike, digest: hashlib._Hash | None = None, expected: str = "a data file"
) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line without its line end)`` for each non-blank line of a UTF-8 file.

    The file is read once, in binary, and every byte read is fed to ``digest`` before it is decoded, so a
    fingerprint always describes exactly the bytes that were parsed. Only ``\\n`` separates lines
    (``str.splitlines`` would also split on characters such as U+2028 that occur inside real passages).

    Raises:
        DataFormatError: Missing file or a directory, empty file, blank line followed by data, or invalid UTF-8.
    """
    for lineno, line, _ in _raw_lines(path, digest, expected):
        yield lineno, line


def _raw_lines(
    path: PathLike, digest: hashlib._Hash | None = None, expected: str = "a data file", offset: int = 0,
    first_lineno: int = 1,
) -> Iterator[tuple[int, str, int]]:
    """:func:`_lines` with each line's byte offset, optionally starting at ``offset`` (line ``first_lineno``).

    A start past the beginning continues a file whose earlier lines were all data, so an empty rest is fine.
    """
    require_file(path, expected)
    f = open(path, "rb")
    first_blank = 0
    seen_data = offset > 0
    with f:
        f.seek(offset)
        for lineno, raw in enumerate(f, start=first_lineno):
            if digest is not None:
                digest.update(raw)
            try:
                line = raw.decode("utf-8", errors="strict")
            except UnicodeDecodeError as err:
                raise DataFormatError(
                    f"{path}:{lineno}: invalid UTF-8 (byte 0x{raw[err.start]:02x} at byte offset {err.start})"
                ) from None
            line = line.removesuffix("\n").removesuffix("\r")
            if not line.strip():
                first_blank = first_blank or lineno
                offset += len(raw)
                continue
            if first_blank:
                raise DataFormatError(f"{path}:{first_blank}: blank line")
            seen_data = True
            yield lineno, line, offset
            offset += len(raw)
    if not seen_data:
        raise DataFormatError(f"{path}: file is empty")


def _check_id(path: PathLike, lineno: int, kind: str, value: str) -> str:
    if not _ID.fullmatch(value):
        raise DataFormatError(f"{path}:{lineno}: {kind} {_show(value)} is not a non-negative integer")
    return value


def _parse_id_text(
    path: PathLike, id_kind: str, text_kind: str, digest: hashlib._Hash | None = None
) -> dict[str, str]:
    """Parse ``id<TAB>text`` lines (collection and queries share the format)."""
    records: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in _lines(path, digest, _ID_TEXT_FILES[id_kind]):
        cols = line.split("\t")
        if len(cols) != 2:
            raise DataFormatError(
                f"{path}:{lineno}: expected 2 tab-separated columns ({id_kind}, {text_kind}), "
                f"found {len(cols)}"
            )
        key = _check_id(path, lineno, id_kind, cols[0])
        if key in records:
            raise DataFormatError(
                f"{path}:{lineno}: duplicate {id_kind} {key} (first on line {first_line[key]})"
            )
        if not cols[1].strip():
            raise DataFormatError(f"{path}:{lineno}: empty {text_kind} for {id_kind} {key}")
        records[key] = cols[1]
        first_line[key] = lineno
    return records


# Bytes the collection reader checks per numpy pass: ~23,000 MS MARCO lines, so numpy's per-call cost vanishes,
# while the block, its decoded copy and the per-line arrays stay near 30 MB.
_COLLECTION_BLOCK = 8 << 20


def _read_collection(path: PathLike, digest: hashlib._Hash | None = None) -> Collection:
    """Parse a ``pid<TAB>passage`` file into a :class:`Collection`, under the rules of :func:`_parse_id_text`.

    The file is read in blocks of whole lines, and each block is checked with a few numpy passes over its
    bytes: valid UTF-8, one tab per line, a non-empty digit pid before it, a non-empty passage after it
    (a passage that does not start with a visible ASCII character is checked with ``str.strip``). A block that
    fails any check, and any rest of the file with blank lines, is read from its first line on by the same
    line-by-line code as the queries, which finds and words the first error exactly. Duplicate pids are
    found by sorting the pids, at the end or, when another error stops the reading, among the lines read so far,
    so the error raised is always the one on the earliest line.
    """
    expected = _ID_TEXT_FILES["pid"]
    require_file(path, expected)
    ids: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    offset = 0
    slow = False
    with open(path, "rb") as f:
        pending = b""
        while True:
            data = f.read(_COLLECTION_BLOCK)
            block = pending + data
            pending = b""
            if data:
                cut = block.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a block: read on until it ends
                    pending = block
                    continue
                block, pending = block[:cut], block[cut:]
            if not block:
                break
            parsed = _check_block(block, offset)
            if parsed is None:
                slow = True
                break
            if digest is not None:
                digest.update(block)
            for out, value in zip((ids, starts, lengths), parsed, strict=True):
                out.append(value)
            offset += len(block)
            if not data:
                break
    if slow or not ids:
        tail_ids: list[bytes] = []
        tail_starts: list[int] = []
        tail_lengths: list[int] = []
        try:
            first_lineno = sum(len(block_ids) for block_ids in ids) + 1
            for lineno, line, line_offset in _raw_lines(path, digest, expected, offset, first_lineno):
                cols = line.split("\t")
                if len(cols) != 2:
                    raise DataFormatError(
                        f"{path}:{lineno}: expected 2 tab-separated columns (pid, passage), found {len(cols)}")
                key = _check_id(path, lineno, "pid", cols[0])
                tail_ids.append(key.encode("ascii"))
                if not cols[1].strip():
                    raise DataFormatError(f"{path}:{lineno}: empty passage for pid {key}")
                tail_starts.append(line_offset + len(key) + 1)
                tail_lengths.append(len(cols[1].encode("utf-8")))
        except DataFormatError:
            seen = np.concatenate([*ids, np.array(tail_ids, dtype=bytes)]) if ids or tail_ids else None
            if seen is not None:
                order = np.argsort(seen, kind="stable")
                _raise_duplicate(path, seen[order], order)
            raise
        ids.append(np.array(tail_ids, dtype=bytes))
        starts.append(np.array(tail_starts, dtype=np.int64))
        lengths.append(np.array(tail_lengths, dtype=np.uint32))
    collection = Collection(path, np.concatenate(ids), np.concatenate(starts), np.concatenate(lengths))
    _raise_duplicate(path, collection._sorted, collection._rank)
    return collection


def _check_block(block: bytes, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Pids, text offsets and text byte lengths of a block of valid collection lines; None if any line is not."""
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    a = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(a == 10)
    if not len(ends) or ends[-1] != len(a) - 1:  # the file's last line, without a line end
        ends = np.append(ends, len(a))
    begins = np.concatenate([[0], ends[:-1] + 1])
    tabs = np.flatnonzero(a == 9)
    # As many tabs as lines, the k-th inside the k-th line: exactly one tab on every line.
    if len(tabs) != len(ends) or not ((tabs > begins) & (tabs < ends)).all():
        return None
    stops = ends - (a[ends - 1] == 13)  # one \r before the line end belongs to it (ends - 1 >= a tab)
    text_lengths = stops - tabs - 1
    if text_lengths.min() < 1:
        return None
    id_lengths = tabs - begins
    width = int(id_lengths.max())
    inside = np.arange(width) < id_lengths[:, None]
    chars = np.where(inside, a[np.minimum(begins[:, None] + np.arange(width), len(a) - 1)], 0).astype(np.uint8)
    if not (((chars >= 48) & (chars <= 57)) | ~inside).all():
        return None
    # A passage starting with a visible ASCII character is not blank; any other is checked as the reader does.
    first = a[tabs + 1]
    for t, s in zip(tabs[(first <= 32) | (first >= 127)].tolist(), stops[(first <= 32) | (first >= 127)].tolist(),
                    strict=True):
        if not block[t + 1:s].decode("utf-8").strip():
            return None
    return chars.view(f"S{width}").ravel(), offset + tabs + 1, text_lengths.astype(np.uint32)


def _raise_duplicate(path: PathLike, ranked: np.ndarray, order: np.ndarray) -> None:
    """Raise the duplicate-pid error for the earliest repeated pid, given pids sorted stably and their positions.

    Passages are lines 1..n (a blank line followed by data is an error), so passage i is on line i + 1.
    """
    repeats = np.flatnonzero(ranked[1:] == ranked[:-1]) + 1
    if not len(repeats):
        return
    i = int(repeats[np.argmin(order[repeats])])
    first = int(order[int(np.searchsorted(ranked, ranked[i]))])
    key = ranked[i].decode("ascii")
    raise DataFormatError(f"{path}:{int(order[i]) + 1}: duplicate pid {key} (first on line {first + 1})")


def _unknown(
    qid: str, pid: str, queries: Mapping[str, str] | None, corpus: Mapping[str, str] | None
) -> str | None:
    """What a qrels/run line names that the queries or collection lack, or None when both are known."""
    if queries is not None and qid not in queries:
        return f"qid {qid} is not in the queries"
    if corpus is not None and pid not in corpus:
        return f"pid {pid} is not in the collection"
    return None


def _parse_qrels(
    path: PathLike,
    digest: hashlib._Hash | None = None,
    queries: Mapping[str, str] | None = None,
    corpus: Mapping[str, str] | None = None,
    unknown: Literal["error", "drop", "keep"] = "error",
) -> tuple[Qrels, int]:
    """Parse a TREC qrels file, checking ids against ``queries``/``corpus`` when given.

    ``"keep"`` keeps judgments of passages missing from ``corpus`` (they still count in the ideal DCG and in
    recall) and drops only lines naming unknown queries.

    Returns:
        The qrels and the number of lines dropped for naming an unknown qid or pid (always 0 for ``"error"``).
    """
    qrels: Qrels = {}
    first_line: dict[tuple[str, str], int] = {}
    dropped = 0
    for lineno, line in _lines(path, digest, "the TREC qrels file"):
        cols = line.split()
        if len(cols) != 4:
            raise DataFormatError(
                f"{path}:{lineno}: expected 4 whitespace-separated columns (qid iter pid grade), "
                f"found {len(cols)}"
            )
        qid = _check_id(path, lineno, "qid", cols[0])
        pid = _check_id(path, lineno, "pid", cols[2])
        if not _INT.fullmatch(cols[3]):
            raise DataFormatError(f"{path}:{lineno}: grade {_show(cols[3])} is not an integer")
        grade = int(cols[3])
        if grade < 0:
            raise DataFormatError(f"{path}:{lineno}: grade {grade} is negative")
        if (qid, pid) in first_line:
            raise DataFormatError(
                f"{path}:{lineno}: duplicate judgment for qid {qid} pid {pid} "
                f"(first on line {first_line[qid, pid]})"
            )
        first_line[qid, pid] = lineno
        problem = _unknown(qid, pid, queries, None if unknown == "keep" else corpus)
        if problem is not None:
            if unknown == "error":
                raise DataFormatError(f"{path}:{lineno}: {problem}")
            dropped += 1
            continue
        qrels.setdefault(qid, {})[pid] = grade
    return qrels, dropped


def _parse_run(
    path: PathLike,
    digest: hashlib._Hash | None = None,
    queries: Mapping[str, str] | None = None,
    corpus: Mapping[str, str] | None = None,
) -> Run:
    """Parse a TREC run file, checking ids against ``queries``/``corpus`` when given."""
    run: Run = {}
    for lineno, line in _lines(path, digest, "the TREC run file"):
        cols = line.split()
        if len(cols) != 6:
            raise DataFormatError(
                f"{path}:{lineno}: expected 6 whitespace-separated columns (qid Q0 pid rank score tag), "
                f"found {len(cols)}"
            )
        qid = _check_id(path, lineno, "qid", cols[0])
        pid = _check_id(path, lineno, "pid", cols[2])
        if not _INT.fullmatch(cols[3]):
            raise DataFormatError(f"{path}:{lineno}: rank {_show(cols[3])} is not an integer")
        try:
            score = float(cols[4])
        except ValueError:
            raise DataFormatError(f"{path}:{lineno}: score {_show(cols[4])} is not a number") from None
        # NaN has no order and inf ties with itself: either would make the ranking ill-defined.
        if not math.isfinite(score):
            raise DataFormatError(f"{path}:{lineno}: score {cols[4]} is not finite")
        # Every earlier line is in ``run`` (a line naming an unknown id stops the reading), so it finds repeats
        # without a second dict of (qid, pid) -> line, which would cost ~130 bytes a line.
        if pid in run.get(qid, ()):
            raise DataFormatError(
                f"{path}:{lineno}: duplicate entry for qid {qid} pid {pid} "
                f"(first on line {_first_run_line(path, qid, pid)})"
            )
        problem = _unknown(qid, pid, queries, corpus)
        if problem is not None:
            raise DataFormatError(f"{path}:{lineno}: {problem}")
        run.setdefault(qid, {})[pid] = score
    return run


def _first_run_line(path: PathLike, qid: str, pid: str) -> int:
    """The line of the first run entry for (qid, pid), found again once a repeat of it is met."""
    for lineno, line in _lines(path):
        cols = line.split()
        if cols[0] == qid and cols[2] == pid:
            return lineno
    raise AssertionError(f"{path}: no entry for qid {qid} pid {pid}")


def _parse_triples(path: PathLike, digest: hashlib._Hash | None = None) -> list[tuple[str, str, str]]:
    triples = []
    for lineno, line in _lines(path, digest, "the triples TSV file"):
        cols = line.split("\t")
        if len(cols) != 3:
            raise DataFormatError(
                f"{path}:{lineno}: expected 3 tab-separated columns (query, positive, negative), "
                f"found {len(cols)}"
            )
        for kind, col in zip(("query", "positive passage", "negative passage"), cols, strict=True):
            if not col.strip():
                raise DataFormatError(f"{path}:{lineno}: empty {kind}")
        triples.append((cols[0], cols[1], cols[2]))
    return triples


def read_collection(path: PathLike) -> Collection:
    """Read a ``pid<TAB>passage`` collection.

    Args:
        path: The collection file (e.g. ``collection.tsv``).

    Returns:
        pid -> passage, in file order: a read-only mapping that keeps the texts in the file (see
        :class:`~finetune.data.collection.Collection`): 30 bytes a passage of arrays (60 of RSS measured at
        1 M and 3 M passages) instead of a dict's ~540, text included.

    Raises:
        DataFormatError: Wrong column count, non-integer or duplicate pid, empty passage, blank line,
            bad UTF-8, empty or missing file.
    """
    return _read_collection(path)


def read_queries(path: PathLike) -> dict[str, str]:
    """Read a ``qid<TAB>query`` file; same rules as :func:`read_collection`.

    Args:
        path: The queries file (e.g. ``queries.dev.small.tsv``).

    Returns:
        qid -> query text, in file order.

    Raises:
        DataFormatError: As for :func:`read_collection`.
    """
    return _parse_id_text(path, "qid", "query")


def read_qrels(path: PathLike) -> Qrels:
    """Read TREC qrels ``qid iter pid grade``; column 2 is any token (``0`` in MS MARCO, ``Q0`` in TREC DL).

    Args:
        path: The qrels file.

    Returns:
        qid -> pid -> grade (>= 0).

    Raises:
        DataFormatError: Wrong column count, non-integer id or grade, negative grade, duplicate (qid, pid),
            blank line, bad UTF-8, empty or missing file.
    """
    return _parse_qrels(path)[0]


def read_trec_run(path: PathLike) -> Run:
    """Read a TREC run ``qid Q0 pid rank score tag``; the ranking is carried by the scores.

    Args:
        path: The run file.

    Returns:
        qid -> pid -> score.

    Raises:
        DataFormatError: Wrong column count, non-integer id or rank, non-numeric or non-finite score,
            duplicate (qid, pid), blank line, bad UTF-8, empty or missing file.
    """
    return _parse_run(path)


def read_triples(path: PathLike) -> list[tuple[str, str, str]]:
    """Read ``query<TAB>positive<TAB>negative`` training triples.

    Args:
        path: The triples file (e.g. ``triples.train.small.tsv``).

    Returns:
        (query, positive passage, negative passage) per line, in file order.

    Raises:
        DataFormatError: Wrong column count, empty column, blank line, bad UTF-8, empty or missing file.
    """
    return _parse_triples(path)


# ----------------------------------------------------------------------------------------------- writing


def _check_text(kind: str, key: str, text: str) -> None:
    # A tab, line end or empty text would be written fine but could not be read back as the same record.
    if not text.strip() or any(c in text for c in "\t\n\r"):
        raise ValueError(f"{kind} for {key!r} is empty or contains a tab or line break: {_show(text)}")


def _check_ids(*ids: str) -> None:
    for value in ids:
        if not _ID.fullmatch(value):
            raise ValueError(
                f"id {value!r} is not a non-negative integer string, which the file formats require"
            )


def _write_lines(path: PathLike, lines: Iterable[str]) -> None:
    # newline="\n" keeps the bytes identical on every platform.
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line)
            f.write("\n")


def _write_id_text(records: Mapping[str, str], path: PathLike, kind: str) -> None:
    for key, text in records.items():
        _check_ids(key)
        _check_text(kind, key, text)
    _write_lines(path, (f"{key}\t{text}" for key, text in records.items()))


def write_collection(corpus: Mapping[str, str], path: PathLike) -> None:
    """Write ``pid<TAB>passage`` lines in the mapping's order.

    Args:
        corpus: pid -> passage; pids are digit strings, passages non-empty without tabs or line breaks.
        path: Output file (overwritten).

    Raises:
        ValueError: A record that could not be read back unchanged.
    """
    _write_id_text(corpus, path, "passage")


def write_queries(queries: Mapping[str, str], path: PathLike) -> None:
    """Write ``qid<TAB>query`` lines in the mapping's order.

    Args:
        queries: qid -> query text, under the same rules as :func:`write_collection`.
        path: Output file (overwritten).

    Raises:
        ValueError: A record that could not be read back unchanged.
    """
    _write_id_text(queries, path, "query")


def write_qrels(qrels: Qrels, path: PathLike) -> None:
    """Write TREC qrels ``qid 0 pid grade`` (the MS MARCO spelling of column 2) in the mapping's order.

    Args:
        qrels: qid -> pid -> grade (>= 0).
        path: Output file (overwritten).

    Raises:
        ValueError: A non-digit id or a negative grade.
    """
    for qid, judged in qrels.items():
        for pid, grade in judged.items():
            _check_ids(qid, pid)
            if grade < 0:
                raise ValueError(f"grade {grade} for qid {qid} pid {pid} is negative")
    _write_lines(
        path,
        (f"{qid} 0 {pid} {int(grade)}" for qid, judged in qrels.items() for pid, grade in judged.items()),
    )


def write_trec_run(run: Run, path: PathLike, tag: str = "run") -> None:
    """Write a TREC run ``qid Q0 pid rank score tag``, ranks 1..n per query by descending score.

    Ties are broken by pid so the file is the same whatever order the scores were computed in. Scores are
    written with ``repr``, the shortest text that parses back to the same float, so round trips are exact.

    Args:
        run: qid -> pid -> score.
        path: Output file (overwritten).
        tag: The run name in column 6 (one token).

    Raises:
        ValueError: A non-digit id, a non-finite score or a tag that is not one token.
    """
    if not tag or tag.split() != [tag]:
        raise ValueError(f"run tag {tag!r} must be one token without whitespace")
    lines = []
    for qid, scored in run.items():
        for rank, (pid, score) in enumerate(sorted(scored.items(), key=lambda kv: (-kv[1], kv[0])), start=1):
            _check_ids(qid, pid)
            if not math.isfinite(score):
                raise ValueError(f"score {score} for qid {qid} pid {pid} is not finite")
            lines.append(f"{qid} Q0 {pid} {rank} {float(score)!r} {tag}")
    _write_lines(path, lines)


def write_triples(triples: Iterable[tuple[str, str, str]], path: PathLike) -> None:
    """Write ``query<TAB>positive<TAB>negative`` lines.

    Args:
        triples: (query, positive passage, negative passage); texts non-empty without tabs or line breaks.
        path: Output file (overwritten).

    Raises:
        ValueError: A text that could not be read back unchanged.
    """
    triples = list(triples)
    for i, triple in enumerate(triples):
        for kind, text in zip(("query", "positive passage", "negative passage"), triple, strict=True):
            _check_text(kind, f"triple {i}", text)
    _write_lines(path, ("\t".join(triple) for triple in triples))


# ----------------------------------------------------------------------------------------------- ranking sets


def load_msmarco_files(
    collection: PathLike,
    queries: PathLike,
    qrels: PathLike,
    run: PathLike | None = None,
    name: str = "msmarco",
    unknown_qrels: Literal["error", "drop", "keep"] = "error",
) -> RankingSet:
    """Load a ranking set from files in the official formats, fingerprinted and cross-checked.

    Each file is read once; its sha256 is computed over the very bytes that are parsed and recorded under the
    file's path as given (so ``a/collection.tsv`` and ``b/collection.tsv`` are told apart).
    Queries without judgments are kept (they can still be ranked).

    Args:
        collection: ``pid<TAB>passage`` file.
        queries: ``qid<TAB>query`` file.
        qrels: TREC qrels file.
        run: Optional TREC run file (first-stage candidates); every qid and pid it names must be known.
        name: The set's name.
        unknown_qrels: What to do with a qrels line naming a qid not in ``queries`` or a pid not in
            ``collection``: ``"error"`` raises; ``"drop"`` skips it and logs how many were skipped at WARNING
            level. ``"keep"`` keeps judgments of passages missing from the collection and drops only those of
            unknown queries. Use ``"keep"`` to evaluate rerank sets such as TREC DL, whose qrels judge passages
            the first stage never retrieved (their text is not shipped): metrics then match the official ones
            (DL19 BM25 nDCG@10 0.506, where ``"drop"`` inflates it to 0.546 by shrinking the ideal ranking).

    Returns:
        The ranking set, with ``fingerprints`` {path: sha256}.

    Raises:
        DataFormatError: Any malformed line, or (for ``"error"``) a qrels or run line naming an unknown qid or
            pid; the message names the file and line.
        ValueError: ``unknown_qrels`` is not ``"error"``, ``"drop"`` or ``"keep"``.
    """
    if unknown_qrels not in ("error", "drop", "keep"):
        raise ValueError(f"unknown_qrels must be 'error', 'drop' or 'keep', not {unknown_qrels!r}")
    # One digest per role, each fed the bytes that role parsed; keyed by path in the result.
    paths = {"collection": collection, "queries": queries, "qrels": qrels, "run": run}
    digests = {role: hashlib.sha256() for role, path in paths.items() if path is not None}
    corpus = _read_collection(collection, digests["collection"])
    query_texts = _parse_id_text(queries, "qid", "query", digests["queries"])
    judged, dropped = _parse_qrels(qrels, digests["qrels"], query_texts, corpus, unknown_qrels)
    if dropped:
        logger.warning(
            "%s: dropped %d qrels lines naming a query or passage that is not in %s / %s",
            qrels,
            dropped,
            Path(queries).name,
            Path(collection).name,
        )
    candidates = None if run is None else _parse_run(run, digests["run"], query_texts, corpus)
    return RankingSet(
        name=name,
        corpus=corpus,
        queries=query_texts,
        qrels=judged,
        run=candidates,
        fingerprints={str(paths[role]): digest.hexdigest() for role, digest in digests.items()},
    )


def load_triples(path: PathLike, name: str = "triples") -> RankingSet:
    """Turn a ``query<TAB>positive<TAB>negative`` file into a ranking set.

    Triples carry no ids, so qids and pids are :func:`text_id` of the text (digit strings; the same text
    always gets the same id). Positives are judged grade 1 and negatives grade 0; a passage that is a
    positive on one line and a negative on another for the same query keeps grade 1. The run lists, per
    query, every passage in first-seen order (so each line's positive precedes its negative) with scores
    n, n-1, ..., 1: a hard-negative miner finds the file's negatives among the run's non-relevant candidates.

    Args:
        path: The triples file.
        name: The set's name.

    Returns:
        The ranking set, with ``fingerprints`` {path: sha256 of the bytes parsed}.

    Raises:
        DataFormatError: As for :func:`read_triples`.
    """
    digest = hashlib.sha256()
    triples = _parse_triples(path, digest)
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    for query, positive, negative in triples:
        qid = text_id(query)
        queries[qid] = query
        judged = qrels.setdefault(qid, {})
        for text, grade in ((positive, 1), (negative, 0)):
            pid = text_id(text)
            corpus[pid] = text
            judged[pid] = max(grade, judged.get(pid, 0))
    # A dict keeps first-insertion order, so each query's judgments are already in first-seen order.
    run: Run = {
        qid: {pid: float(len(judged) - i) for i, pid in enumerate(judged)} for qid, judged in qrels.items()
    }
    fingerprints = {str(path): digest.hexdigest()}
    return RankingSet(
        name=name, corpus=corpus, queries=queries, qrels=qrels, run=run, fingerprints=fingerprints
    )
