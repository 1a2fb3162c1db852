"""MS MARCO v1.1-layout rows through the real ``datasets.load_dataset``, offline, from a local folder."""

from __future__ import annotations

# Before anything imports `datasets`/`huggingface_hub`, which read it once: no test may reach the hub.
import json

import pytest

from finetune.data.hub import load_hub_msmarco, ranking_set_from_msmarco_rows
from finetune.data.msmarco import text_id
from finetune.data.types import DataFormatError


def _row(query_id: int, query: str, texts: list[str], selected: list[int]) -> dict:
    return {
        "query_id": query_id,
        "query": query,
        "query_type": "description",
        "passages": {"is_selected": selected, "passage_text": texts, "url": [f"http://x/{i}" for i in texts]},
        "answers": ["an answer"],
        "wellFormedAnswers": [],
    }


ROWS = [
    _row(19699, "what is a rba", ["RBA is a bank.", "Banks lend.", "Rates rose."], [1, 0, 0]),
    _row(19700, "capital of veldoria", ["Ostburg governs.", "Banks lend."], [0, 1]),
    _row(19701, "no answer here", ["Rates rose.", "Cats purr."], [0, 0]),
]


@pytest.fixture
def local_dataset(tmp_path):
    folder = tmp_path / "ms_marco_local"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return folder


def test_load_hub_msmarco_reads_a_local_folder_through_datasets(local_dataset, tmp_path):
    ranking_set = load_hub_msmarco(
        dataset=str(local_dataset), config=None, split="train", revision="local", cache_dir=tmp_path / "cache"
    )
    rba, banks, rates, ostburg, cats = (
        text_id(t) for t in ("RBA is a bank.", "Banks lend.", "Rates rose.", "Ostburg governs.", "Cats purr.")
    )
    assert ranking_set.queries == {
        "19699": "what is a rba",
        "19700": "capital of veldoria",
        "19701": "no answer here",
    }
    assert ranking_set.corpus == {
        rba: "RBA is a bank.",
        banks: "Banks lend.",
        rates: "Rates rose.",
        ostburg: "Ostburg governs.",
        cats: "Cats purr.",
    }
    # is_selected 1 -> grade 1; listed but not selected -> judged grade 0; a query without a positive is kept.
    assert ranking_set.qrels == {
        "19699": {rba: 1, banks: 0, rates: 0},
        "19700": {ostburg: 0, banks: 1},
        "19701": {rates: 0, cats: 0},
    }
    # The listed order is the candidate ranking: score n - position.
    assert ranking_set.run == {
        "19699": {rba: 3.0, banks: 2.0, rates: 1.0},
        "19700": {ostburg: 2.0, banks: 1.0},
        "19701": {rates: 2.0, cats: 1.0},
    }
    assert ranking_set.fingerprints == {"hub": f"{local_dataset}/None/train@local"}
    assert ranking_set.name == f"{local_dataset}/None/train"


def test_max_queries_keeps_the_first_rows(local_dataset, tmp_path):
    ranking_set = load_hub_msmarco(
        str(local_dataset),
        None,
        "train",
        revision="local",
        max_queries=2,
        name="head",
        cache_dir=tmp_path / "c",
    )
    assert list(ranking_set.queries) == ["19699", "19700"]
    assert ranking_set.name == "head"


def test_revision_is_required(local_dataset):
    for revision in (None, ""):
        with pytest.raises(ValueError, match="pinned revision"):
            load_hub_msmarco(str(local_dataset), None, "train", revision=revision)


def test_pids_depend_only_on_the_passage_text():
    forward = ranking_set_from_msmarco_rows(ROWS, name="a")
    backward = ranking_set_from_msmarco_rows(list(reversed(ROWS)), name="b")
    assert forward.corpus == backward.corpus
    assert forward.qrels == backward.qrels
    assert all(pid.isdigit() for pid in forward.corpus)


def test_a_text_listed_twice_keeps_its_best_grade_and_first_score():
    ranking_set = ranking_set_from_msmarco_rows([_row(1, "q", ["dup", "other", "dup"], [0, 0, 1])], name="d")
    dup, other = text_id("dup"), text_id("other")
    assert ranking_set.qrels == {"1": {dup: 1, other: 0}}
    assert ranking_set.run == {"1": {dup: 3.0, other: 2.0}}


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        (
            _row(5, "q", ["a", "b"], [1]),
            "rows: row 1: passages.passage_text has 2 entries but passages.is_selected has 1",
        ),
        (_row(5, "q", ["a"], [2]), "rows: row 1: passages.is_selected[0] is 2, not 0 or 1"),
        (_row(19699, "q", ["a"], [1]), "rows: row 1: duplicate query_id 19699 (first in row 0)"),
        ({"query_id": 5, "query": "q"}, "rows: row 1: 'passages' is missing or not a Mapping"),
    ],
)
def test_malformed_rows_raise_naming_the_row(bad_row, expected):
    with pytest.raises(DataFormatError) as info:
        ranking_set_from_msmarco_rows([ROWS[0], bad_row], name="rows")
    assert str(info.value) == expected
