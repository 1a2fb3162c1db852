"""retrieve_unlabeled_candidates through ``.entrypoint()``: queries without judgments get BM25's top ``depth`` over
the training collection, one group per query; queries already judged (by id or by text) are dropped."""

import pandas as pd
import pytest

import steps.data.retrieve_unlabeled_candidates as module
from finetune.data.types import RankingSet
from finetune.params import RankingDataParams, RetrievalParams
from steps.data.retrieve_unlabeled_candidates import retrieve_unlabeled_candidates

SOURCE = {"kind": "msmarco_files", "collection": "/unused/collection.tsv", "queries": "/unused/queries.tsv",
          "qrels": "/unused/qrels.tsv"}


def _data(tmp_path, lines: list[str], **unlabeled) -> RankingDataParams:
    path = tmp_path / "unlabeled.tsv"
    path.write_text("".join(f"{line}\n" for line in lines))
    return RankingDataParams.model_validate({"train": SOURCE, "unlabeled": {"queries": str(path), **unlabeled}})


@pytest.fixture
def sets(toy_ranking):
    """Training queries 1-3 of the toy set; query 4 evaluates."""
    train = RankingSet("train", toy_ranking.corpus, {q: toy_ranking.queries[q] for q in "123"},
                       {q: toy_ranking.qrels[q] for q in "123"})
    evaluation = RankingSet("eval", toy_ranking.corpus, {"4": toy_ranking.queries["4"]}, {"4": toy_ranking.qrels["4"]})
    return train, evaluation


def test_new_queries_get_one_group_of_bm25_candidates_each(tmp_path, sets, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    lines = ["101\tparis capital", "102\titaly boot capital", "105\tthe cat", "1\tcapital of sweden",
             "103\t  Capital of SPAIN ", "104\tcapital of germany"]
    data = _data(tmp_path, lines, depth=3)
    candidates = retrieve_unlabeled_candidates.entrypoint(data, *sets, RetrievalParams(), {})

    assert isinstance(candidates, pd.DataFrame)
    # "1" is a training id; 103 and 104 repeat an evaluation and a training query (case and spaces ignored);
    # "the cat" matches one passage only, and a group needs two to rank.
    assert sorted(candidates["qid"].unique()) == ["101", "102"]
    assert candidates.groupby("qid").size().to_dict() == {"101": 3, "102": 3}
    assert candidates.groupby("qid")["group"].nunique().to_dict() == {"101": 1, "102": 1}
    assert (candidates["role"] == "candidate").all() and (candidates["grade"] == 0).all()
    # In BM25 order: the passage with the query's rarest words first.
    assert candidates.groupby("qid")["pid"].first().to_dict() == {"101": "10", "102": "15"}
    assert candidates.loc[candidates["qid"] == "102", "pid"].tolist()[:2] == ["15", "14"]  # boot, then italy
    assert recorded == [{"unlabeled_queries": 3, "groups": 2, "rows": 6, "depth": 3}]


def test_without_unlabeled_queries_the_step_says_so(sets):
    data = RankingDataParams.model_validate({"train": SOURCE})
    with pytest.raises(ValueError, match="data.unlabeled is not set"):
        retrieve_unlabeled_candidates.entrypoint(data, *sets, RetrievalParams(), {})
