"""BM25 first stage on bm25s, with Pyserini-like defaults (Lucene scoring, k1 = 0.9, b = 0.4).

Scoring is bm25s's ``method="lucene"``, which is Lucene's (>= 8) BM25 as used by Pyserini/Anserini:

    score(q, d) = sum over query tokens t in d of  idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))

The textbook ``(k1 + 1)`` factor in the numerator is absent (Lucene 8 dropped it): it multiplies every score
by the same constant (1.9 for k1 = 0.9), so rankings are unchanged. Tokenisation is bm25s's: lowercase, the
regex ``\\b\\w\\w+\\b`` (tokens of two or more word characters, as scikit-learn's CountVectorizer), stopword
removal, then the Snowball stemmer from PyStemmer. A query token repeated twice counts twice, as in Pyserini's
bag-of-words queries.

Indexing streams the corpus in chunks: each chunk is tokenised with a word -> id cache in front of bm25s's
tokenizer (which still assigns every id, so queries and passages share one vocabulary) and reduced at once to
(term, tf) pairs per passage. bm25s's own idf and term-frequency functions then score the pairs in a few
vectorised calls instead of bm25s's per-passage Python loop, and a counting sort writes them straight into
the CSC arrays; the index is bit-for-bit the one ``bm25s.BM25.index`` builds from the same tokens
(tests/finetune/ranking/test_bm25.py checks it), about 5x faster, and the corpus is never held as a list of
token lists. Peak memory is 14 bytes per (passage, term) pair: 6 for the pairs, 8 for the index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import compress, islice, repeat
from operator import is_

import bm25s
import numpy as np
import Stemmer
from bm25s.scoring import (
    _build_idf_array,
    _build_nonoccurrence_array,
    _select_idf_scorer,
    _select_tfc_scorer,
)
from bm25s.tokenization import Tokenized, Tokenizer

from finetune.data.collection import Collection
from finetune.data.types import Run

# Passages tokenised per batch: 20,000 MS MARCO passages of ~56 words make ~1.1 M words, whose word list, id
# list and int64 arrays take ~50 MB while the chunk is processed (the 1 M-passage corpus itself takes ~700 MB),
# yet each numpy call still covers a million tokens, so its fixed cost vanishes.
CHUNK_PASSAGES = 20_000
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s's default splitter
# The same tokens plus a match for each newline: findall tries a match where the previous one ended, which is
# never inside a run of word characters unless the run has one character, so the \b anchors never reject one.
_split = re.compile(r"(?u)\w\w+|\n").findall
_STOPWORD = -1
_END = -2  # the newline that ends a passage in a joined chunk


@dataclass
class TermCounts:
    """A tokenised corpus reduced to what BM25 needs: one (term, tf) pair per distinct term of a passage.

    The pairs are in passage order, and within a passage in ascending term order; ``doc_terms`` says how many
    belong to each passage, so the passage of a pair is implied. They stay in the chunks they were counted in
    (:attr:`parts`): joining them would briefly need twice their memory, and leave the chunks' freed memory to
    the heap rather than to the system. 6 bytes per pair (MS MARCO passages have ~38 distinct kept terms:
    ~230 bytes a passage); :attr:`term`, :attr:`tf` and :attr:`doc` join or spell them out when asked.

    Attributes:
        parts: (passages, term ids as int32, tfs as uint16 -- float32 if a count exceeds 65,535) per chunk.
        doc_terms: Pairs per passage (int32).
        doc_lengths: Kept tokens per passage (int32); a passage with no kept token counts the empty token once.
    """

    parts: list[tuple[int, np.ndarray, np.ndarray]]
    doc_terms: np.ndarray
    doc_lengths: np.ndarray

    @property
    def term(self) -> np.ndarray:
        """Term id of each pair (int32)."""
        return np.concatenate([term for _, term, _ in self.parts]) if self.parts else np.zeros(0, np.int32)

    @property
    def tf(self) -> np.ndarray:
        """Occurrences of each pair's term in its passage."""
        return np.concatenate([tf for _, _, tf in self.parts]) if self.parts else np.zeros(0, np.uint16)

    @property
    def doc(self) -> np.ndarray:
        """Passage index of each pair (int32), ascending."""
        return np.repeat(np.arange(len(self.doc_terms), dtype=np.int32), self.doc_terms)


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(islice(it, size)):
        yield batch


def count_terms(tokenizer: Tokenizer, texts: Iterable[str], chunk_passages: int = CHUNK_PASSAGES) -> TermCounts:
    """Tokenise ``texts`` as ``tokenizer.tokenize(texts, update_vocab=True)`` would, chunk by chunk.

    A chunk is joined with newlines, lowercased and split by the tokenizer's regex once (a newline never occurs
    inside a token, and the extra alternative ``|\\n`` marks where each passage ends); words are looked up in a
    cache with one ``map`` call. The first time a word is seen, bm25s decides its id (or that it is a stopword)
    and updates the tokenizer's vocabulary, in the order bm25s would meet it. Each chunk's ids are then
    counted per passage with one ``np.unique`` over ``passage << 32 | term`` keys.

    Args:
        tokenizer: A bm25s tokenizer (lowercasing, stopwords and stemmer as configured); its vocabulary grows.
        texts: The passages, in index order; consumed once.
        chunk_passages: Passages per chunk (memory is proportional to it, the result is not).

    Returns:
        The (term, tf) pairs of each passage and the passage lengths, with ids from ``tokenizer.get_vocab_dict()``.
    """
    if getattr(tokenizer.splitter, "__self__", None) is None or tokenizer.splitter.__self__.pattern != TOKEN_PATTERN:
        raise ValueError(f"count_terms needs a tokenizer that splits with bm25s's default {TOKEN_PATTERN!r}")
    list(tokenizer.streaming_tokenize([], update_vocab=True))  # registers the empty token "" first, as bm25s does
    empty = tokenizer.word_to_id[""]
    stopwords = frozenset(tokenizer.stopwords or ())
    known: dict[str, int] = {"\n": _END}

    def learn(words: Iterable[str]) -> None:
        # bm25s's order: a known word keeps its id, a stopword is dropped, anything else is stemmed and numbered
        # (by bm25s itself, one word per "text", in the order the words first occur).
        new = []
        for word in words:
            if word in tokenizer.word_to_id:
                known[word] = tokenizer.word_to_id[word]
            elif word in stopwords:
                known[word] = _STOPWORD
            else:
                new.append(word)
        for word, ids in zip(new, tokenizer.streaming_tokenize(new, update_vocab=True), strict=True):
            known[word] = ids[0]

    parts, doc_terms, lengths = [], [], []
    for batch in _batches(texts, chunk_passages):
        text = "\n".join(batch)
        if text.count("\n") != len(batch) - 1:  # a passage with a line break: fall back to one call per passage
            words = [w for passage in batch
                     for w in (*tokenizer.splitter(passage.lower() if tokenizer.lower else passage), "\n")]
        else:
            words = _split(text.lower() if tokenizer.lower else text)
            words.append("\n")
        ids = list(map(known.get, words))
        if None in ids:  # new words: learn them in the order bm25s would meet them, then look up again
            learn(dict.fromkeys(compress(words, map(is_, ids, repeat(None)))))
            ids = list(map(known.__getitem__, words))
        del words
        ids = np.array(ids, dtype=np.int64)
        ends = ids == _END
        doc = np.cumsum(ends) - ends  # passage of each token: the number of passage ends before it
        kept = ids >= 0
        doc, ids = doc[kept], ids[kept]
        batch_lengths = np.bincount(doc, minlength=len(batch))
        no_token = np.flatnonzero(batch_lengths == 0)  # bm25s gives such a passage the empty token, once
        if len(no_token):
            doc, ids = np.concatenate([doc, no_token]), np.concatenate([ids, np.full(len(no_token), empty)])
            batch_lengths[no_token] = 1
        keys, tf = np.unique((doc << 32) | ids, return_counts=True)
        parts.append((len(batch), (keys & 0xFFFFFFFF).astype(np.int32),
                      tf.astype(np.uint16 if tf.max() <= np.iinfo(np.uint16).max else np.float32)))
        doc_terms.append(np.bincount(keys >> 32, minlength=len(batch)).astype(np.int32))
        lengths.append(batch_lengths.astype(np.int32))
    return TermCounts(parts, *(np.concatenate(chunks) if chunks else np.zeros(0, np.int32)
                               for chunks in (doc_terms, lengths)))


class _TermCountsBM25(bm25s.BM25):
    """bm25s.BM25 whose index is built from :class:`TermCounts` (the override point bm25s documents).

    Each step is the one ``bm25s.BM25.build_index_from_ids`` takes, with the same functions and dtypes, applied
    to many pairs at once: document frequencies, idf, the term-frequency component (broadcast over the
    passage lengths), idf x tfc in float64 stored as float32. The CSC arrays scipy would build from those
    triples are then filled in place, one chunk of :func:`count_terms` at a time, by a counting sort on the
    term: each term's column starts at its document-frequency prefix sum, and chunks come in passage order, so
    every column lists its passages in ascending order, as scipy's COO -> CSC conversion leaves them. Beyond
    the counts, the build holds the finished index (8 bytes per pair) and one chunk's temporaries, never a COO
    copy of all triples.
    """

    def build_index_from_ids(self, unique_token_ids, corpus_token_ids: TermCounts, show_progress=True,
                             leave_progress=False):
        counts = corpus_token_ids
        n_docs, n_vocab, nnz = len(counts.doc_lengths), len(unique_token_ids), int(counts.doc_terms.sum())
        avg_doc_len = counts.doc_lengths.mean()
        df = np.zeros(n_vocab, dtype=np.int64)
        for _, term, _ in counts.parts:
            df += np.bincount(term, minlength=n_vocab)
        doc_frequencies = {token: int(df[token]) for token in unique_token_ids}
        compute_idf, compute_tfc = _select_idf_scorer(self.idf_method), _select_tfc_scorer(self.method)
        self.nonoccurrence_array = None
        if self.method in self.methods_requiring_nonoccurrence:
            self.nonoccurrence_array = _build_nonoccurrence_array(
                doc_frequencies=doc_frequencies, n_docs=n_docs, compute_idf_fn=compute_idf,
                calculate_tfc_fn=compute_tfc, l_d=avg_doc_len, l_avg=avg_doc_len, k1=self.k1, b=self.b,
                delta=self.delta, dtype=self.dtype)
        idf = _build_idf_array(doc_frequencies=doc_frequencies, n_docs=n_docs, compute_idf_fn=compute_idf,
                               dtype=self.dtype)
        # scipy's choice of index dtype: int32 while every index and the nnz fit in it.
        index_dtype = np.int32 if max(nnz, n_docs, n_vocab) < 2**31 else np.int64
        indptr = np.zeros(n_vocab + 1, dtype=index_dtype)
        np.cumsum(df, out=indptr[1:])
        next_slot = indptr[:-1].astype(np.int64)  # where each term's next passage goes
        del df
        data = np.empty(nnz, dtype=self.dtype)
        indices = np.empty(nnz, dtype=index_dtype)
        lo = 0
        for passages, term, tf in counts.parts:  # a chunk of count_terms: ~750,000 MS MARCO pairs
            doc = np.repeat(np.arange(lo, lo + passages, dtype=index_dtype), counts.doc_terms[lo:lo + passages])
            lo += passages
            tfc = compute_tfc(tf_array=tf.astype(np.float32, copy=False), l_d=counts.doc_lengths[doc],
                              l_avg=avg_doc_len, k1=self.k1, b=self.b, delta=self.delta)
            scores = idf[term] * tfc
            if self.nonoccurrence_array is not None:
                scores -= self.nonoccurrence_array[term]
            order = np.argsort(term, kind="stable")
            term = term[order]
            block_df = np.bincount(term, minlength=n_vocab)
            rank = np.arange(len(term)) - (np.cumsum(block_df) - block_df)[term]  # place among the block's pairs
            slots = next_slot[term] + rank
            indices[slots] = doc[order]
            data[slots] = scores[order]
            next_slot += block_df
        return {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}


class BM25Index:
    """A corpus tokenised and indexed once; :meth:`retrieve` then serves any number of query sets.

    bm25s precomputes every (passage, term) score into a sparse CSC matrix: 8 bytes per distinct term of
    each passage (float32 score + int32 passage index) plus 8 per vocabulary term, so MS MARCO's 8.8M
    passages of ~38 distinct kept terms take about 2.6 GB. While it is built, the corpus is streamed through
    :func:`count_terms` and held as 6 bytes per (passage, term) pair, never as lists of tokens. A
    :class:`~finetune.data.collection.Collection` corpus is read a block at a time and its pid array is
    shared, not copied.

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
        corpus: Mapping[str, str],
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
        # pid of each passage, by index: a Collection's pid bytes as they are, a dict's keys as a list.
        self._pids = corpus.ids if isinstance(corpus, Collection) else list(corpus)
        self.n_threads = n_threads
        self._tokenizer = Tokenizer(
            lower=True,
            splitter=TOKEN_PATTERN,
            stopwords=stopwords,
            stemmer=None if stemmer is None else Stemmer.Stemmer(stemmer),
        )
        counts = count_terms(self._tokenizer, corpus.values(), CHUNK_PASSAGES)
        self._retriever = _TermCountsBM25(k1=k1, b=b, method=method, csc_backend="scipy")
        self._retriever.index(Tokenized(ids=counts, vocab=self._tokenizer.get_vocab_dict()), show_progress=False)
        # bm25s pads a text with no kept token (empty, or only stopwords) with the id of the empty string "".
        self._empty_id = self._tokenizer.get_vocab_dict()[""]

    def __len__(self) -> int:
        return len(self._pids)

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
        k = min(k, len(self._pids))
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
            run[qid] = {self._pid(d): s for d, s in zip(doc_row, score_row, strict=True) if s != 0.0}
        return run

    def _pid(self, index: int) -> str:
        pid = self._pids[index]
        return pid.decode("utf-8") if isinstance(pid, bytes) else pid


def bm25_retrieve(
    corpus: Mapping[str, str],
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
