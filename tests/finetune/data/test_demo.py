"""The synthetic demo set: deterministic, loadable by the real loaders, and hard for BM25."""

from __future__ import annotations

import hashlib
import math
import time

import bm25s
import pytest

from finetune.data.demo import write_demo_msmarco
from finetune.data.msmarco import load_msmarco_files, load_triples, read_triples
from finetune.data.types import RankingSet


def _digests(paths: dict) -> dict[str, str]:
    return {kind: hashlib.sha256(path.read_bytes()).hexdigest() for kind, path in paths.items()}


def _load(paths: dict) -> RankingSet:
    return load_msmarco_files(paths["collection"], paths["queries"], paths["qrels"], name="demo")


def _ndcg_at_10(ranked: list[str], judged: dict[str, int]) -> float:
    """nDCG@10 with exponential gain 2^grade - 1 and log2(rank + 1) discount; unjudged passages gain 0."""
    dcg = sum((2 ** judged.get(pid, 0) - 1) / math.log2(rank + 2) for rank, pid in enumerate(ranked[:10]))
    ideal = sorted(judged.values(), reverse=True)[:10]
    idcg = sum((2**grade - 1) / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    return dcg / idcg


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    return write_demo_msmarco(tmp_path_factory.mktemp("demo"))


def test_same_arguments_give_byte_identical_files_and_another_seed_differs(tmp_path, demo):
    again = write_demo_msmarco(tmp_path / "again")
    assert set(again) == {"collection", "queries", "qrels", "triples"}
    assert _digests(again) == _digests(demo)
    other = _digests(write_demo_msmarco(tmp_path / "other", seed=1))
    assert all(other[kind] != digest for kind, digest in _digests(demo).items())


def test_loads_with_the_strict_loaders_and_has_the_requested_counts(demo):
    ranking_set = _load(demo)
    assert ranking_set.counts() == {
        "passages": 200 * 30,
        "queries": 200,
        "judged_queries": 200,
        "judgments": 200 * 30,
        "run_entries": 0,
    }
    assert all(len(judged) == 30 for judged in ranking_set.qrels.values())
    assert {grade for judged in ranking_set.qrels.values() for grade in judged.values()} == {0, 1, 2, 3}


def test_every_query_has_a_highly_relevant_passage_even_when_small(tmp_path, demo):
    small = _load(write_demo_msmarco(tmp_path, num_queries=7, passages_per_query=2))
    assert small.counts()["passages"] == 14
    for ranking_set in (_load(demo), small):
        assert all(max(judged.values()) >= 2 for judged in ranking_set.qrels.values())
    with pytest.raises(ValueError, match="passages_per_query"):
        write_demo_msmarco(tmp_path, passages_per_query=1)


def test_triples_pair_a_relevant_passage_with_a_judged_negative(demo):
    ranking_set = _load(demo)
    grade = {
        (ranking_set.queries[qid], ranking_set.corpus[pid]): g
        for qid, judged in ranking_set.qrels.items()
        for pid, g in judged.items()
    }
    triples = read_triples(demo["triples"])
    assert len(triples) >= 200
    assert all(
        grade[query, positive] >= 2 and grade[query, negative] == 0 for query, positive, negative in triples
    )
    assert len(load_triples(demo["triples"]).queries) == 200


def test_bm25_is_only_moderate_while_the_grades_rank_perfectly(demo):
    """Guards learnability: lexical overlap must mislead (BM25 nDCG@10 < 0.7; about 0.39 at seed 0)."""
    ranking_set = _load(demo)
    pids, qids = list(ranking_set.corpus), list(ranking_set.queries)
    retriever = bm25s.BM25()
    corpus_tokens = bm25s.tokenize([ranking_set.corpus[p] for p in pids], stopwords="en", show_progress=False)
    retriever.index(corpus_tokens, show_progress=False)
    query_tokens = bm25s.tokenize([ranking_set.queries[q] for q in qids], stopwords="en", show_progress=False)
    docs, _ = retriever.retrieve(query_tokens, k=10, show_progress=False)
    bm25 = [_ndcg_at_10([pids[j] for j in docs[i]], ranking_set.qrels[q]) for i, q in enumerate(qids)]
    oracle = [
        _ndcg_at_10(sorted(judged, key=lambda pid: -judged[pid]), judged)
        for judged in ranking_set.qrels.values()
    ]
    assert 0.2 < sum(bm25) / len(bm25) < 0.7
    assert sum(oracle) / len(oracle) == pytest.approx(1.0)


def test_generating_the_default_set_is_fast(tmp_path):
    start = time.perf_counter()
    write_demo_msmarco(tmp_path)
    assert time.perf_counter() - start < 1.0
