"""MS MARCO from a dataset hub (or a local folder), through ``datasets.load_dataset`` at a pinned revision.

The MS MARCO v1.1 QnA layout (``microsoft/ms_marco``) has one row per query with its candidate passages
inline and no passage ids; :func:`ranking_set_from_msmarco_rows` turns such rows into a :class:`RankingSet`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from finetune.data.msmarco import text_id
from finetune.data.types import DataFormatError, Qrels, RankingSet, Run

logger = logging.getLogger(__name__)


def load_hub_msmarco(
    dataset: str = "microsoft/ms_marco",
    config: str | None = "v1.1",
    split: str = "train",
    revision: str | None = None,
    max_queries: int | None = None,
    name: str | None = None,
    cache_dir: str | Path | None = None,
) -> RankingSet:
    """Load MS MARCO-layout rows with ``datasets.load_dataset`` and build a ranking set from them.

    Args:
        dataset: Hub id, or a local folder of data files (e.g. ``train.jsonl``) in the same layout.
        config: Dataset configuration (``"v1.1"``, ``"v2.1"``); None for a local folder.
        split: Split to load, e.g. ``"train"`` or ``"validation"``.
        revision: The commit sha or tag to load. Required: a pinned revision is immutable, which is what lets
            the fingerprint ``{"hub": "<dataset>/<config>/<split>@<revision>"}`` stand for the data's bytes.
        max_queries: Keep only the first N rows (queries) of the split; None keeps all.
        name: The set's name; defaults to ``"<dataset>/<config>/<split>"``.
        cache_dir: Where ``datasets`` caches downloads and Arrow files; None uses its default.

    Returns:
        The ranking set, as built by :func:`ranking_set_from_msmarco_rows`.

    Raises:
        ValueError: ``revision`` is missing or ``max_queries`` is below 1.
        DataFormatError: A row that does not follow the MS MARCO layout.
    """
    if not revision:
        raise ValueError(
            f"load_hub_msmarco needs a pinned revision (a commit sha or tag) for {dataset!r}, "
            "so that the same config always loads the same data."
        )
    if max_queries is not None and max_queries < 1:
        raise ValueError(f"max_queries must be at least 1 (or None for all), not {max_queries}")
    # Imported here: `datasets` takes about a second to import and only this loader needs it.
    import datasets

    rows = datasets.load_dataset(
        dataset,
        config,
        split=split,
        revision=revision,
        cache_dir=None if cache_dir is None else str(cache_dir),
    )
    if max_queries is not None:
        rows = rows.select(range(min(max_queries, len(rows))))
    ranking_set = ranking_set_from_msmarco_rows(rows, name=name or f"{dataset}/{config}/{split}")
    ranking_set.fingerprints = {"hub": f"{dataset}/{config}/{split}@{revision}"}
    return ranking_set


def _field(row: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = row.get(key) if isinstance(row, Mapping) else None
    if not isinstance(value, kind):
        raise DataFormatError(f"{where}: {key!r} is missing or not a {kind.__name__}")
    return value


def ranking_set_from_msmarco_rows(rows: Iterable[Mapping[str, Any]], name: str) -> RankingSet:
    """Build a ranking set from rows in the MS MARCO v1.1 QnA layout.

    Each row is ``{"query_id": int, "query": str, "passages": {"is_selected": [0/1, ...],
    "passage_text": [str, ...], ...}, ...}``; other keys (``answers``, ``url``, ...) are ignored.

    - pids: passages carry no ids, so each distinct text gets :func:`~finetune.data.msmarco.text_id` (a digit
      string from its sha1), the same in every split and row order.
    - qrels: ``is_selected == 1`` gives grade 1, every other listed passage grade 0 (judged non-relevant).
      Queries without a selected passage are kept with only grade-0 judgments.
    - run: the listed passages, in their given order, scored n, n-1, ..., 1.

    A text listed twice for one query keeps its best grade and its first (highest) score. Empty passage texts
    carry nothing to rank and are skipped, with their count logged at WARNING level.

    Args:
        rows: The rows, e.g. a ``datasets.Dataset``.
        name: The set's name (also used in error messages).

    Returns:
        The ranking set (with empty ``fingerprints``; the caller knows the source).

    Raises:
        DataFormatError: A row (named by its 0-based index) with a missing field, a duplicate query_id,
            ``is_selected`` values other than 0/1, or ``passage_text`` and ``is_selected`` of different
            lengths.
    """
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    run: Run = {}
    first_row: dict[str, int] = {}
    empty_passages = 0
    for index, row in enumerate(rows):
        where = f"{name}: row {index}"
        query_id = _field(row, "query_id", int, where)
        query = _field(row, "query", str, where)
        passages = _field(row, "passages", Mapping, where)
        texts = _field(passages, "passage_text", list, f"{where}: passages")
        selected = _field(passages, "is_selected", list, f"{where}: passages")
        # bool is an int subclass but no MS MARCO id; a negative id could not be written to the id files.
        if isinstance(query_id, bool) or query_id < 0:
            raise DataFormatError(f"{where}: query_id {query_id!r} is not a non-negative integer")
        qid = str(query_id)
        if qid in first_row:
            raise DataFormatError(f"{where}: duplicate query_id {qid} (first in row {first_row[qid]})")
        if not query.strip():
            raise DataFormatError(f"{where}: empty query")
        if len(texts) != len(selected):
            raise DataFormatError(
                f"{where}: passages.passage_text has {len(texts)} entries but passages.is_selected has "
                f"{len(selected)}"
            )
        first_row[qid] = index
        queries[qid] = query
        judged: dict[str, int] = {}
        scored: dict[str, float] = {}
        for position, (text, is_selected) in enumerate(zip(texts, selected, strict=True)):
            if is_selected not in (0, 1) or isinstance(is_selected, bool | float):
                raise DataFormatError(
                    f"{where}: passages.is_selected[{position}] is {is_selected!r}, not 0 or 1"
                )
            if not isinstance(text, str):
                raise DataFormatError(f"{where}: passages.passage_text[{position}] is not a string")
            if not text.strip():
                empty_passages += 1
                continue
            pid = text_id(text)
            corpus[pid] = text
            judged[pid] = max(is_selected, judged.get(pid, 0))
            scored.setdefault(pid, float(len(texts) - position))
        if judged:
            qrels[qid] = judged
            run[qid] = scored
    if empty_passages:
        logger.warning("%s: skipped %d empty passage texts", name, empty_passages)
    return RankingSet(name=name, corpus=corpus, queries=queries, qrels=qrels, run=run)
