import pytest

from finetune.data.demo import write_demo_msmarco
from finetune.data.msmarco import write_queries, write_triples
from finetune.data.ranking import fingerprint_sources, load_ranking_data, split_queries
from finetune.data.types import DataFormatError
from finetune.params import RankingDataParams


def _files(path, **kw):
    files = write_demo_msmarco(path, **kw)
    return {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}}


def test_split_is_seeded_disjoint_and_order_free():
    qids = [str(i) for i in range(10)]
    train, test = split_queries(qids, 0.3, seed=7)
    assert len(test) == 3 and sorted(train + test) == sorted(qids) and not set(train) & set(test)
    assert split_queries(list(reversed(qids)), 0.3, seed=7) == (train, test)
    assert split_queries(qids, 0.3, seed=8) != (train, test)
    assert split_queries(["a", "b"], 0.01, seed=0)[1] and split_queries(["a", "b"], 0.99, seed=0)[0]


def test_one_source_is_split_by_seed(tmp_path):
    params = RankingDataParams.model_validate({"train": _files(tmp_path, num_queries=20), "eval_fraction": 0.25})
    train, test = load_ranking_data(params)
    assert (len(train.queries), len(test.queries)) == (15, 5)
    assert not set(train.queries) & set(test.queries)
    assert set(train.qrels) == set(train.queries) and set(test.qrels) == set(test.queries)


def test_train_on_a_evaluate_on_b_removes_shared_queries(tmp_path):
    a = _files(tmp_path / "a", num_queries=12, seed=1)
    b = _files(tmp_path / "b", num_queries=6, seed=2)
    # Put one of B's queries (same text, different id) into A: it must not be trained on.
    from finetune.data.msmarco import read_queries

    queries_a, queries_b = read_queries(a["queries"]), read_queries(b["queries"])
    leaked_id = "10"  # A has qids 1-12, B 1-6: ids 1-6 are removed by id, "10" only by its text
    queries_a[leaked_id] = next(iter(queries_b.values())).upper()
    write_queries(queries_a, a["queries"])
    params = RankingDataParams.model_validate({"train": a, "eval": b})
    train, test = load_ranking_data(params)
    assert set(test.queries) == set(queries_b) and leaked_id not in train.queries
    assert sorted(train.queries, key=int) == ["7", "8", "9", "11", "12"]
    assert set(fingerprint_sources(params)) == {f"{s}/{r}" for s in ("train", "eval")
                                                 for r in ("collection", "queries", "qrels")}


def test_triples_train_with_a_separate_eval_set(tmp_path):
    write_triples([("q one", "good passage", "bad passage"), ("q two", "fine text", "poor text")], tmp_path / "t.tsv")
    params = RankingDataParams.model_validate({"train": {"kind": "triples", "path": str(tmp_path / "t.tsv")},
                                               "eval": _files(tmp_path / "e", num_queries=4)})
    train, test = load_ranking_data(params)
    assert len(train.queries) == 2 and all(sorted(g.values()) == [0, 1] for g in train.qrels.values())
    assert len(test.queries) == 4


def test_missing_file_is_one_line(tmp_path):
    source = _files(tmp_path, num_queries=4)
    source["qrels"] = str(tmp_path / "nope.txt")
    with pytest.raises(DataFormatError, match=r"nope.txt: no such file$"):
        fingerprint_sources(RankingDataParams.model_validate({"train": source}))
