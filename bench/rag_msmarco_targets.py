"""Reference texts for ``rag_intent`` on real MS MARCO data: ``../shared/evaldata`` has no query intents.

The closest real data is MS MARCO dev-small-600: 600 dev queries, the BM25 top-20 passages of each with their text
and the official relevance judgment (one relevant passage per query). The target text written here is the sentence
of the judged-relevant passage that shares the most query words (ties: the earliest; at most 40 words): the
answer-bearing sentence a retrieval-augmented generator should write from the query and its passages. It is a
rule applied to real judgments, not an intent written by a person: the pipeline's ROUGE then measures how well the
generator finds and restates that sentence. Queries whose relevant passage is not among the 11,809 passages with
text (60 of 600) are left out, so the queries file is rewritten too.

``python -m bench.rag_msmarco_targets [out_dir]`` (default ``data/rag_msmarco_dev600``) writes ``queries.tsv`` and
``intents.tsv``; ``configs/rag_intent_smollm2.yaml`` reads them with the shared collection and qrels.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from finetune.data.msmarco import read_collection, read_qrels, read_queries
from finetune.data.rag_demo import write_intents

SOURCE = Path("../shared/evaldata/msmarco-passage/dev-small-600")
MAX_WORDS = 40
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
STOPWORDS = frozenset("a an and are as at be by can do does for from how in is it of on or the to was what when "
                      "where which who why with you your".split())


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


def answer_sentence(query: str, passage: str) -> str:
    """The passage sentence sharing the most (non-stop) words with the query, cut to ``MAX_WORDS`` words."""
    sentences = [s.strip() for s in _SENTENCE_END.split(" ".join(passage.split())) if s.strip()]
    asked = words(query)
    best = max(sentences, key=lambda s: (len(asked & words(s)), -sentences.index(s)))
    return " ".join(best.split()[:MAX_WORDS])


def main(out_dir: str = "data/rag_msmarco_dev600") -> None:
    corpus = read_collection(SOURCE / "collection.tsv")
    queries = read_queries(SOURCE / "queries.tsv")
    qrels = read_qrels(SOURCE / "qrels.txt")
    targets = {}
    for qid, query in queries.items():
        relevant = [pid for pid, grade in qrels.get(qid, {}).items() if grade >= 1 and pid in corpus]
        if relevant:
            targets[qid] = answer_sentence(query, corpus[sorted(relevant)[0]])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "queries.tsv").write_text("".join(f"{qid}\t{queries[qid]}\n" for qid in targets), encoding="utf-8")
    write_intents(targets, out / "intents.tsv")
    print(f"{len(targets)} of {len(queries)} queries have their relevant passage's text; wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
