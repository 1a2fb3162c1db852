"""BM25 first stage on bm25s, with Pyserini-like defaults (Lucene scoring, k1 = 0.9, b = 0.4).

Scoring is bm25s's ``method="lucene"``, which is Lucene's (>= 8) BM25 as used by Pyserini/Anserini:

    score(q, d) = sum over query tokens t in d of  idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))

The textbook ``(k1 + 1)`` factor in the numerator is absent (Lucene 8 dropped it): it multiplies every score
by the same constant (1.9 for k1 = 0.9), so rankings are unchanged. Tokenisation is bm25s's: lowercase, the
regex ``\\b\\w\\w+\\b`` (tokens of two or more word characters, as scikit-learn's CountVectorizer), stopword
removal, then the Snowball stemmer from PyStemmer. A query token repeated twice counts twice, as in Pyserini's
bag-of-words queries.
"""

from __future__ import annotations

import bm25s
import Stemmer
from bm25s.tokenization import Tokenizer

from finetune.data.types import Run


class BM25Index:
    """A corpus tokenised and indexed once; :meth:`retrieve` then serves any number of query sets.

    bm25s precomputes every (passage, term) score into a sparse CSC matrix: 8 bytes per distinct term of
    each passage (float32 score + int32 passage index) plus 8 per vocabulary term, so MS MARCO's 8.8M
    passages of ~30 distinct terms take about 2 GB. The token lists are dropped after indexing.

    Args:
        corpus: pid -> passage text.
        k1: Term-frequency saturation (Pyserini's MS MARCO default 0.9).
        b: Length normalisation (Pyserini's MS MARCO default 0.4).
        method: bm25s scoring variant: "lucene", "robertson", "atire", "bm25l" or "bm25+".
        stemmer: Snowball language for PyStemmer ("english"), or None for no stemming.
        stopwords: bm25s stopword list name ("en"), or None to keep every token.
        n_threads: Threads bm25s uses to score queries; 1 scores them in the calling thread.

    Raises:
        ValueError: The corpus is empty, or n_threads < 1.
    """

    def __init__(
        self,
        corpus: dict[str, str],
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        stemmer: str | None = "english",
        stopwords: str | None = "en",
        n_threads: int = 1,
    ) -> None:
        if not corpus:
            raise ValueError("BM25Index needs at least one passage; the corpus is empty")
        if n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")
        self.pids = list(corpus)
        self.n_threads = n_threads
        self._tokenizer = Tokenizer(
            lower=True,
            stopwords=stopwords,
            stemmer=None if stemmer is None else Stemmer.Stemmer(stemmer),
        )
        corpus_ids = self._tokenizer.tokenize(
            list(corpus.values()), update_vocab=True, return_as="ids", show_progress=False
        )
        self._retriever = bm25s.BM25(k1=k1, b=b, method=method)
        self._retriever.index(self._tokenizer.to_tokenized_tuple(corpus_ids), show_progress=False)
        # bm25s pads a text with no kept token (empty, or only stopwords) with the id of the empty string "".
        self._empty_id = self._tokenizer.get_vocab_dict()[""]

    def __len__(self) -> int:
        return len(self.pids)

    def retrieve(self, queries: dict[str, str], k: int = 100) -> Run:
        """Top-k passages for every query, scored by BM25.

        Passages scoring exactly 0 (under "lucene" those sharing no term with the query) are left out, as
        Lucene returns only matching documents: an arbitrary top-k of zeros would be noise in recall and in
        hard-negative mining. So a query can get fewer than k candidates, and a query none of whose tokens
        occurs in the corpus gets an empty dict.

        Args:
            queries: qid -> query text.
            k: Candidates per query; capped at the corpus size.

        Returns:
            qid -> pid -> BM25 score for every query (order of qids kept).

        Raises:
            ValueError: k < 1.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, len(self.pids))
        # update_vocab=False: a query word the corpus never saw is dropped instead of getting a new id.
        token_ids = self._tokenizer.tokenize(
            list(queries.values()), update_vocab=False, return_as="ids", show_progress=False
        )
        run: Run = {qid: {} for qid in queries}
        matched = [
            (qid, kept)
            for qid, ids in zip(queries, token_ids, strict=True)
            if (kept := [t for t in ids if t != self._empty_id])
        ]
        if not matched:
            return run
        docs, scores = self._retriever.retrieve(
            [ids for _, ids in matched],
            k=k,
            sorted=True,
            show_progress=False,
            # bm25s reads 0 as "no thread pool"; one worker in a pool would only add overhead.
            n_threads=0 if self.n_threads == 1 else self.n_threads,
        )
        for (qid, _), doc_row, score_row in zip(matched, docs.tolist(), scores.tolist(), strict=True):
            run[qid] = {self.pids[d]: s for d, s in zip(doc_row, score_row, strict=True) if s != 0.0}
        return run


def bm25_retrieve(
    corpus: dict[str, str],
    queries: dict[str, str],
    k: int = 100,
    k1: float = 0.9,
    b: float = 0.4,
    method: str = "lucene",
    stemmer: str | None = "english",
    stopwords: str | None = "en",
    n_threads: int = 1,
) -> Run:
    """Index ``corpus`` and return the BM25 top-k for every query (see :class:`BM25Index`).

    Args:
        corpus: pid -> passage text.
        queries: qid -> query text.
        k: Candidates per query; capped at the corpus size.
        k1: Term-frequency saturation.
        b: Length normalisation.
        method: bm25s scoring variant.
        stemmer: Snowball language for PyStemmer, or None.
        stopwords: bm25s stopword list name, or None.
        n_threads: Threads bm25s uses to score queries.

    Returns:
        qid -> pid -> score; queries with no term in the corpus map to an empty dict.
    """
    index = BM25Index(
        corpus, k1=k1, b=b, method=method, stemmer=stemmer, stopwords=stopwords, n_threads=n_threads
    )
    return index.retrieve(queries, k=k)
