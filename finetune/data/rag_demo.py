"""Offline demo data for intent generation with retrieval: questions about the demo world's invented places.

The corpus, queries and graded judgments are the demo MS MARCO set (``finetune.data.demo``); this module adds
each query's reference intent, ``find the <attribute> of <place>`` ("what is the capital of veldoria" →
"find the capital of veldoria"), written as ``intents.tsv`` (``qid<TAB>intent``), the layout real data uses too.
The attribute is recovered by matching the query against the generator's own query templates, so the intent is
exact. Passages of grade 3 state the asked fact about the asked place: they are the ones that support the intent.
"""

from __future__ import annotations

import re
from pathlib import Path

from finetune.data.demo import ATTRIBUTES, write_demo_msmarco
from finetune.data.msmarco import read_queries

INTENT_TEMPLATE = "find the {keyword} of {place}"


def _query_patterns() -> list[tuple[re.Pattern[str], str]]:
    patterns = []
    for attribute in ATTRIBUTES:
        for template in attribute.queries:
            head, tail = template.split("{e}")
            patterns.append((re.compile(f"^{re.escape(head)}(?P<place>[a-z]+){re.escape(tail)}$"),
                             attribute.keyword))
    return patterns


def intent_of(query: str) -> str:
    """The reference intent of a demo query.

    Raises:
        ValueError: The query matches none of the demo generator's query templates.
    """
    for pattern, keyword in _query_patterns():
        match = pattern.match(query)
        if match:
            return INTENT_TEMPLATE.format(keyword=keyword, place=match["place"])
    raise ValueError(f"not a demo query: {query!r}")


def write_intents(intents: dict[str, str], path: str | Path) -> None:
    """Write ``qid<TAB>intent`` lines (the intents file of ``RagFiles``), UTF-8 with ``\\n`` line ends.

    Raises:
        ValueError: A record ``read_intents`` could not read back unchanged: a tab, ``\\n`` or ``\\r`` in the qid
            or intent, or an intent that is empty or starts or ends with whitespace (the reader strips it).
    """
    for qid, intent in intents.items():
        if any(c in qid + intent for c in "\t\n\r") or not intent.strip() or intent != intent.strip():
            raise ValueError(f"query {qid!r}: intent {intent[:40]!r} is empty, has surrounding whitespace or "
                             "contains a tab or line break")
    text = "".join(f"{qid}\t{intent}\n" for qid, intent in intents.items())
    Path(path).write_bytes(text.encode("utf-8"))


def write_demo_rag(out_dir: str | Path, num_queries: int = 120, passages_per_query: int = 6,
                   seed: int = 0) -> dict[str, Path]:
    """Write the demo corpus, queries, qrels and reference intents.

    Returns:
        ``{"collection", "queries", "qrels", "intents"}`` paths (plus the demo's ``triples``).
    """
    paths = write_demo_msmarco(out_dir, num_queries, passages_per_query, seed)
    paths["intents"] = Path(out_dir) / "intents.tsv"
    write_intents({qid: intent_of(q) for qid, q in read_queries(paths["queries"]).items()}, paths["intents"])
    return paths
