"""BM25 first stage: bm25s scores equal a brute-force Lucene BM25 on a small corpus."""

import math
import re
from collections import Counter

import numpy as np
import pytest
from bm25s.tokenization import Tokenizer

from finetune.ranking.bm25 import BM25Index, bm25_retrieve, count_terms

K1, B = 0.9, 0.4

CORPUS = {
    "p0": "The quick brown fox jumps over the lazy dog.",
    "p1": "A lazy dog sleeps all day; the dog snores loudly.",
    "p2": "Foxes are small omnivorous mammals of the wider dog family.",
    "p3": "BM25 is a ranking function used by search engines to rank documents.",
    "p4": "Search engines rank web documents by relevance to a query.",
    "p5": "The brown bear eats salmon in the river near the mountains.",
    "p6": "Salmon swim upstream in the river to spawn every autumn season.",
    "p7": "Neural rerankers improve ranking quality over BM25 on MS MARCO passages.",
    "p8": "Cross-encoders score the query and passage together with full attention.",
    "p9": "The fox, the dog and the bear: three mammals in one short story about a forest.",
}

QUERIES = {
    "q_fox": "brown fox dog",
    "q_rank": "bm25 ranking of search documents",
    "q_river": "salmon in the river",
    "q_neural": "neural cross encoders for passage ranking",
    "q_mammal": "small mammals family",
}

TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")


def _tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text.lower())


def _reference_bm25(corpus: dict[str, str], query: str) -> dict[str, float]:
    """Brute-force Lucene BM25: sum over query tokens of idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl)).

    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)). Lucene (>= 8, so Pyserini) has no (k1 + 1) factor in the
    numerator; with it every score would be 1.9x larger and the ranking the same.
    """
    docs = {pid: Counter(_tokens(text)) for pid, text in corpus.items()}
    lengths = {pid: sum(tf.values()) for pid, tf in docs.items()}
    n_docs = len(docs)
    avgdl = sum(lengths.values()) / n_docs
    scores: dict[str, float] = {}
    for pid, tf in docs.items():
        score = 0.0
        for term in _tokens(query):
            if tf[term] == 0:
                continue
            df = sum(1 for other in docs.values() if other[term] > 0)
            idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
            score += idf * tf[term] / (tf[term] + K1 * (1 - B + B * lengths[pid] / avgdl))
        if score > 0:
            scores[pid] = score
    return scores


def _ranking(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=scores.__getitem__, reverse=True)


def test_bm25s_tokeniser_splits_like_the_reference():
    """Lowercase, then ``\\b\\w\\w+\\b``: one-letter "A"/"a" go, "Cross-encoders" splits in two."""
    tokenizer = Tokenizer(lower=True, stopwords=None, stemmer=None)
    texts = list(CORPUS.values())
    assert tokenizer.tokenize(texts, return_as="string", show_progress=False) == [_tokens(t) for t in texts]
    assert _tokens(CORPUS["p8"])[:3] == ["cross", "encoders", "score"]


def test_scores_and_rankings_match_brute_force_lucene_bm25():
    run = bm25_retrieve(CORPUS, QUERIES, k=len(CORPUS), k1=K1, b=B, stemmer=None, stopwords=None)

    assert list(run) == list(QUERIES)
    for qid, query in QUERIES.items():
        expected = _reference_bm25(CORPUS, query)
        # Distinct scores, so "identical ranking" cannot pass by an arbitrary tie order.
        assert len(set(expected.values())) == len(expected) > 1, qid
        assert set(run[qid]) == set(expected), qid
        for pid, score in expected.items():
            assert run[qid][pid] == pytest.approx(score, abs=1e-5), (qid, pid)
        assert _ranking(run[qid]) == _ranking(expected), qid


def test_golden_scores_show_length_normalisation():
    """Query "cat dog"; N = 3 passages of lengths 3, 1, 2, so avgdl = 2.

    cat: df = 1, idf = ln(1 + 2.5 / 1.5) = 0.980829.  dog: df = 2, idf = ln(1 + 1.5 / 2.5) = 0.470004.
    "cat cat dog" (dl 3, norm 0.6 + 0.4 * 3 / 2 = 1.2):
        cat 0.980829 * 2 / (2 + 0.9 * 1.2) = 0.636902;  dog 0.470004 / (1 + 1.08) = 0.225963;  sum 0.862865
    "dog" (dl 1, norm 0.6 + 0.4 * 1 / 2 = 0.8):  dog 0.470004 / (1 + 0.72) = 0.273258
    "bird fish" shares no term, so it is not returned at all.
    """
    corpus = {"a": "cat cat dog", "b": "dog", "c": "bird fish"}
    run = bm25_retrieve(corpus, {"q": "cat dog"}, stemmer=None, stopwords=None)

    assert run["q"] == pytest.approx({"a": 0.862865, "b": 0.273258}, abs=1e-6)


def test_k_is_capped_at_corpus_size_and_ids_round_trip():
    corpus = {"msmarco:7": "red apple pie", "0042": "green apple", "doc/ä": "apple apple apple", "x": "pear"}
    index = BM25Index(corpus, stemmer=None, stopwords=None)

    full = index.retrieve({"q1": "apple"}, k=1000)["q1"]
    top2 = index.retrieve({"q1": "apple"}, k=2)["q1"]

    assert set(full) == {"msmarco:7", "0042", "doc/ä"}  # "pear" scores 0 and is left out
    assert _ranking(full)[0] == "doc/ä"  # tf 3 beats tf 1
    assert list(top2) == _ranking(full)[:2]
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.retrieve({"q1": "apple"}, k=0)


def test_queries_without_a_corpus_term_get_no_candidates():
    """Unknown words, only stopwords, and only one-letter tokens all leave nothing to score."""
    queries = {"oov": "zebra quokka", "stop": "the of and", "short": "a b c", "ok": "lazy zebra"}

    run = bm25_retrieve(CORPUS, queries)

    assert run["oov"] == run["stop"] == run["short"] == {}
    assert set(run["ok"]) == {"p0", "p1"}


def test_default_english_stemming_and_stopwords():
    """PyStemmer maps "running"/"runs" -> "run" and "dogs" -> "dog"; "the" is a stopword."""
    corpus = {"d1": "the dog runs", "d2": "the cat sleeps", "d3": "birds sing"}

    stemmed = bm25_retrieve(corpus, {"q": "the running dogs"})
    unstemmed = bm25_retrieve(corpus, {"q": "the running dogs"}, stemmer=None, stopwords=None)

    assert set(stemmed["q"]) == {"d1"}
    assert set(unstemmed["q"]) == {"d1", "d2"}  # only "the" matches


def test_index_is_reused_and_threads_do_not_change_results():
    single = BM25Index(CORPUS, n_threads=1)
    threaded = BM25Index(CORPUS, n_threads=2)

    first = single.retrieve(QUERIES, k=5)
    assert single.retrieve({"q_fox": QUERIES["q_fox"]}, k=5) == {"q_fox": first["q_fox"]}
    assert threaded.retrieve(QUERIES, k=5) == first
    assert bm25_retrieve(CORPUS, QUERIES, k=5) == first
    assert len(single) == len(CORPUS)


# Passages that exercise every branch of the chunked tokeniser: stopwords only (-> bm25s's empty token), no
# token at all, repeated and capitalised words, non-ASCII letters, a line break inside a passage (one chunk
# falls back to splitting passage by passage), and words first met in a later chunk.
EDGE_CORPUS = {
    **CORPUS,
    "e0": "the of and",
    "e1": "a ; !",
    "e2": "Dog DOG dog dogs Dogs running runner",
    "e3": "Ça coûte très cher à Zürich: Ärzte, Straße, naïve café",
    "e4": "first line\nsecond line about the brown fox",
    "e5": "zebra quokka zebra",
}


def _bm25s_index(corpus, method, stemmer, stopwords):
    """The index bm25s builds itself: its tokenizer over the whole list, then ``BM25.index`` (per-passage loop)."""
    import bm25s
    import Stemmer

    tokenizer = Tokenizer(lower=True, stopwords=stopwords,
                          stemmer=None if stemmer is None else Stemmer.Stemmer(stemmer))
    ids = tokenizer.tokenize(list(corpus.values()), update_vocab=True, return_as="ids", show_progress=False)
    retriever = bm25s.BM25(k1=K1, b=B, method=method)
    retriever.index(tokenizer.to_tokenized_tuple(ids), show_progress=False)
    return tokenizer, retriever


@pytest.mark.parametrize("method", ["lucene", "robertson", "bm25+"])
@pytest.mark.parametrize(("stemmer", "stopwords"), [("english", "en"), (None, None)])
def test_chunked_index_is_bit_for_bit_the_index_bm25s_builds(method, stemmer, stopwords):
    tokenizer, reference = _bm25s_index(EDGE_CORPUS, method, stemmer, stopwords)

    ours = BM25Index(EDGE_CORPUS, k1=K1, b=B, method=method, stemmer=stemmer, stopwords=stopwords)

    assert ours._tokenizer.word_to_id == tokenizer.word_to_id  # same ids, assigned in the same order
    assert ours._tokenizer.get_vocab_dict() == tokenizer.get_vocab_dict()
    for part in ("data", "indices", "indptr"):
        assert np.array_equal(ours._retriever.scores[part], reference.scores[part]), part
    assert ours._retriever.scores["data"].dtype == reference.scores["data"].dtype == np.float32
    query_ids = tokenizer.tokenize(list(QUERIES.values()), update_vocab=False, return_as="ids", show_progress=False)
    docs, scores = reference.retrieve(query_ids, k=5, show_progress=False)
    run = ours.retrieve(QUERIES, k=5)
    pids = list(EDGE_CORPUS)
    for qid, doc_row, score_row in zip(QUERIES, docs.tolist(), scores.tolist(), strict=True):
        assert run[qid] == {pids[d]: s for d, s in zip(doc_row, score_row, strict=True) if s != 0.0}


def test_chunk_size_does_not_change_the_counts():
    """One passage per chunk, three per chunk (the line break lands in the middle one) and one chunk in all."""
    import Stemmer

    def counts(chunk):
        tokenizer = Tokenizer(lower=True, stopwords="en", stemmer=Stemmer.Stemmer("english"))
        result = count_terms(tokenizer, iter(EDGE_CORPUS.values()), chunk_passages=chunk)
        return result, tokenizer.word_to_id

    whole, vocab = counts(1000)
    for chunk in (1, 3):
        other, other_vocab = counts(chunk)
        assert other_vocab == vocab
        for field in ("doc", "term", "tf", "doc_lengths"):
            assert np.array_equal(getattr(other, field), getattr(whole, field)), (chunk, field)
    empty = vocab[""]
    # "the of and" keeps no token and "a ; !" has none: each counts the empty token once, as bm25s does.
    for position in (list(EDGE_CORPUS).index("e0"), list(EDGE_CORPUS).index("e1")):
        assert whole.doc_lengths[position] == 1
        assert whole.term[whole.doc == position].tolist() == [empty]
    # "Dog DOG dog dogs Dogs running runner": dog x5 after stemming, run(ning) x1, runner x1 -> 7 tokens.
    e2 = list(EDGE_CORPUS).index("e2")
    assert whole.doc_lengths[e2] == 7 and sorted(whole.tf[whole.doc == e2].tolist()) == [1.0, 1.0, 5.0]


def test_count_terms_needs_bm25s_default_splitter():
    with pytest.raises(ValueError, match="default"):
        count_terms(Tokenizer(splitter=r"\w+"), ["some text"])


@pytest.mark.parametrize("method", ["lucene", "bm25+"])
def test_index_built_three_passages_at_a_time_is_the_same(monkeypatch, method):
    """The counting sort fills each term's column across chunks: still bm25s's index, pair for pair."""
    from finetune.ranking import bm25

    monkeypatch.setattr(bm25, "CHUNK_PASSAGES", 3)
    _, reference = _bm25s_index(EDGE_CORPUS, method, "english", "en")

    ours = BM25Index(EDGE_CORPUS, k1=K1, b=B, method=method)

    for part in ("data", "indices", "indptr"):
        assert np.array_equal(ours._retriever.scores[part], reference.scores[part]), part


def test_a_collection_file_indexes_and_retrieves_as_its_dict(tmp_path):
    """Digit pids read from a collection.tsv (a Collection, texts left in the file) give the dict's run."""
    from finetune.data.msmarco import read_collection, write_collection

    corpus = {str(100 - i): text for i, text in enumerate(EDGE_CORPUS.values()) if "\n" not in text}
    write_collection(corpus, tmp_path / "collection.tsv")
    collection = read_collection(tmp_path / "collection.tsv")

    run = BM25Index(collection).retrieve(QUERIES, k=5)

    assert run == BM25Index(corpus).retrieve(QUERIES, k=5)
    assert all(isinstance(pid, str) for scored in run.values() for pid in scored)
