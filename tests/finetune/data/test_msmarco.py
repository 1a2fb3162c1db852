"""The official MS MARCO formats: exact round trips, one-line errors naming file and line, fingerprints."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from finetune.data.msmarco import (
    load_msmarco_files,
    load_triples,
    read_collection,
    read_qrels,
    read_queries,
    read_trec_run,
    read_triples,
    sha256_file,
    text_id,
    write_collection,
    write_qrels,
    write_queries,
    write_trec_run,
    write_triples,
)
from finetune.data.types import DataFormatError

CORPUS = {"0": "The seat of government is Ostburg.", "7": "Prices are paid in coins — ünïcode ok.", "12": "x"}
QUERIES = {"3": "capital of veldoria", "5": "currency of veldoria", "9": "unjudged query"}
QRELS = {"3": {"0": 3, "7": 0}, "5": {"7": 2, "12": 1}}
RUN = {"3": {"0": 2.5, "7": -1.25, "12": 1e-7}, "5": {"7": 15.780599594116211, "12": 3.0}}
TRIPLES = [("q one", "pos a", "neg b"), ("q one", "pos a", "neg c"), ("q two", "pos d", "neg b")]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _error(func: Callable[[Path], object], path: Path) -> str:
    """Call a reader that must fail and return its message, checked to be one line starting with the path."""
    with pytest.raises(DataFormatError) as info:
        func(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{path}:")
    return message


@pytest.mark.parametrize(
    ("write", "read", "records", "file_name"),
    [
        (write_collection, read_collection, CORPUS, "collection.tsv"),
        (write_queries, read_queries, QUERIES, "queries.tsv"),
        (write_qrels, read_qrels, QRELS, "qrels.txt"),
        (write_trec_run, read_trec_run, RUN, "run.trec"),
        (write_triples, read_triples, TRIPLES, "triples.tsv"),
    ],
)
def test_write_then_read_round_trips_exactly(tmp_path, write, read, records, file_name):
    path = tmp_path / file_name
    write(records, path)
    assert read(path) == records
    # Reading and writing again reproduces the bytes, so the written form is canonical.
    again = tmp_path / f"again-{file_name}"
    write(read(path), again)
    assert again.read_bytes() == path.read_bytes()


def test_written_formats_are_the_official_ones(tmp_path):
    write_collection({"0": "a b", "12": "c"}, tmp_path / "c.tsv")
    write_qrels({"3": {"0": 3, "12": 0}}, tmp_path / "q.txt")
    write_triples([("q", "p", "n")], tmp_path / "t.tsv")
    assert (tmp_path / "c.tsv").read_bytes() == b"0\ta b\n12\tc\n"
    assert (tmp_path / "q.txt").read_bytes() == b"3 0 0 3\n3 0 12 0\n"
    assert (tmp_path / "t.tsv").read_bytes() == b"q\tp\tn\n"


def test_trec_run_ranks_by_descending_score_and_breaks_ties_by_pid(tmp_path):
    write_trec_run({"1": {"9": 0.5, "2": 2.0, "5": 0.5}}, tmp_path / "run.trec", tag="bm25")
    assert (tmp_path / "run.trec").read_text().splitlines() == [
        "1 Q0 2 1 2.0 bm25",
        "1 Q0 5 2 0.5 bm25",
        "1 Q0 9 3 0.5 bm25",
    ]


def test_readers_accept_crlf_q0_and_trailing_blank_lines(tmp_path):
    assert read_collection(_write(tmp_path / "c.tsv", b"1\ta b\r\n2\tc\r\n")) == {"1": "a b", "2": "c"}
    qrels = _write(tmp_path / "q.txt", b"1 Q0 10 2\n1 0 11 0\n2 x 10 1\n\n\n")
    assert read_qrels(qrels) == {"1": {"10": 2, "11": 0}, "2": {"10": 1}}
    assert read_queries(_write(tmp_path / "queries.tsv", b"4\tno final newline")) == {"4": "no final newline"}


@pytest.mark.parametrize(
    ("read", "data", "expected"),
    [
        (read_collection, b"1\ta\n2\tb\tc\n", ":2: expected 2 tab-separated columns (pid, passage), found 3"),
        (read_collection, b"1\ta\n2 b\n", ":2: expected 2 tab-separated columns (pid, passage), found 1"),
        (read_collection, b"1\ta\nx7\tb\n", ":2: pid 'x7' is not a non-negative integer"),
        (read_collection, b"-1\ta\n", ":1: pid '-1' is not a non-negative integer"),
        (read_collection, b"1\ta\n2\tb\n1\tc\n", ":3: duplicate pid 1 (first on line 1)"),
        (read_collection, b"1\ta\n2\t \n", ":2: empty passage for pid 2"),
        (read_collection, b"1\ta\n\n2\tb\n", ":2: blank line"),
        (read_collection, b"1\ta\n2\tcaf\xe9\n", ":2: invalid UTF-8 (byte 0xe9 at byte offset 5)"),
        (read_queries, b"1\tq\n1\tr\n", ":2: duplicate qid 1 (first on line 1)"),
        (read_queries, b"1.5\tq\n", ":1: qid '1.5' is not a non-negative integer"),
        (
            read_qrels,
            b"1 0 2 1\n1 0 3\n",
            ":2: expected 4 whitespace-separated columns (qid iter pid grade), found 3",
        ),
        (read_qrels, b"1 0 2 1\n1 0 3 high\n", ":2: grade 'high' is not an integer"),
        (read_qrels, b"1 0 2 1.0\n", ":1: grade '1.0' is not an integer"),
        (read_qrels, b"1 0 2 -1\n", ":1: grade -1 is negative"),
        (read_qrels, b"q1 0 2 1\n", ":1: qid 'q1' is not a non-negative integer"),
        (read_qrels, b"1 0 2 1\n1 Q0 2 0\n", ":2: duplicate judgment for qid 1 pid 2 (first on line 1)"),
        (read_trec_run, b"1 Q0 2 1 3.5\n", ":1: expected 6 whitespace-separated columns"),
        (read_trec_run, b"1 Q0 2 1 3.5 t\n1 Q0 3 2 high t\n", ":2: score 'high' is not a number"),
        (read_trec_run, b"1 Q0 2 1 nan t\n", ":1: score nan is not finite"),
        (read_trec_run, b"1 Q0 2 first 3.5 t\n", ":1: rank 'first' is not an integer"),
        (read_trec_run, b"1 Q0 p2 1 3.5 t\n", ":1: pid 'p2' is not a non-negative integer"),
        (
            read_trec_run,
            b"1 Q0 2 1 3.5 t\n2 Q0 3 1 2.5 t\n2 Q0 2 2 2.0 t\n1 Q0 2 3 1.0 t\n",
            ":4: duplicate entry for qid 1 pid 2 (first on line 1)",
        ),
        (
            read_triples,
            b"q\tp\tn\nq\tp\n",
            ":2: expected 3 tab-separated columns (query, positive, negative)",
        ),
        (read_triples, b"q\t\tn\n", ":1: empty positive passage"),
    ],
)
def test_malformed_lines_give_one_line_errors_naming_file_and_line(tmp_path, read, data, expected):
    path = _write(tmp_path / "data.txt", data)
    assert expected in _error(read, path)


@pytest.mark.parametrize("read", [read_collection, read_queries, read_qrels, read_trec_run, read_triples])
def test_empty_and_missing_files_are_named(tmp_path, read):
    empty = _write(tmp_path / "empty.txt", b"")
    assert _error(read, empty) == f"{empty}: file is empty"
    missing = tmp_path / "missing.txt"
    assert _error(read, missing) == f"{missing}: no such file"


def test_writers_refuse_records_that_could_not_be_read_back(tmp_path):
    with pytest.raises(ValueError, match="tab or line break"):
        write_collection({"1": "a\tb"}, tmp_path / "c.tsv")
    with pytest.raises(ValueError, match="not a non-negative integer"):
        write_queries({"q1": "text"}, tmp_path / "q.tsv")
    with pytest.raises(ValueError, match="negative"):
        write_qrels({"1": {"2": -1}}, tmp_path / "qrels.txt")
    with pytest.raises(ValueError, match="one token"):
        write_trec_run(RUN, tmp_path / "run.trec", tag="my run")


# ------------------------------------------------------------------------------------ load_msmarco_files


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    paths = {
        "collection": tmp_path / "collection.tsv",
        "queries": tmp_path / "queries.tsv",
        "qrels": tmp_path / "qrels.txt",
        "run": tmp_path / "run.trec",
    }
    write_collection(CORPUS, paths["collection"])
    write_queries(QUERIES, paths["queries"])
    write_qrels(QRELS, paths["qrels"])
    write_trec_run(RUN, paths["run"])
    return paths


def test_load_msmarco_files_reads_all_files_and_keeps_unjudged_queries(files):
    ranking_set = load_msmarco_files(**files, name="tiny")
    assert ranking_set.name == "tiny"
    assert ranking_set.corpus == CORPUS
    assert ranking_set.queries == QUERIES  # qid 9 has no judgments and is kept
    assert ranking_set.qrels == QRELS
    assert ranking_set.run == RUN
    assert load_msmarco_files(files["collection"], files["queries"], files["qrels"]).run is None


def test_fingerprints_are_sha256_of_the_file_bytes(files):
    fingerprints = load_msmarco_files(**files).fingerprints
    assert fingerprints == {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in files.values()
    }
    assert all(sha256_file(path) == fingerprints[str(path)] for path in files.values())

    data = bytearray(files["collection"].read_bytes())
    data[-2] = ord("y")  # the last passage "x" becomes "y": same length, one byte different
    files["collection"].write_bytes(bytes(data))
    changed = load_msmarco_files(**files).fingerprints
    collection, queries = str(files["collection"]), str(files["queries"])
    assert changed[collection] != fingerprints[collection]
    assert changed[queries] == fingerprints[queries]


def test_qrels_naming_unknown_qid_or_pid_is_an_error_on_its_line(files):
    with files["qrels"].open("a") as f:
        f.write("9 0 0 1\n4 0 0 1\n")  # line 5 is fine (qid 9 exists), line 6 names the unknown qid 4
    assert _error(lambda _: load_msmarco_files(**files), files["qrels"]) == (
        f"{files['qrels']}:6: qid 4 is not in the queries"
    )
    write_qrels({"3": {"0": 1, "99": 0}}, files["qrels"])
    assert _error(lambda _: load_msmarco_files(**files), files["qrels"]) == (
        f"{files['qrels']}:2: pid 99 is not in the collection"
    )


def test_unknown_qrels_drop_skips_and_logs_them(files, caplog):
    write_qrels({"3": {"0": 3, "99": 2}, "4": {"0": 1}, "5": {"7": 2}}, files["qrels"])
    with caplog.at_level(logging.WARNING, logger="finetune.data.msmarco"):
        ranking_set = load_msmarco_files(**files, unknown_qrels="drop")
    assert ranking_set.qrels == {"3": {"0": 3}, "5": {"7": 2}}
    assert "dropped 2 qrels lines" in caplog.text
    with pytest.raises(ValueError, match="unknown_qrels"):
        load_msmarco_files(**files, unknown_qrels="ignore")


def test_unknown_qrels_keep_keeps_judgments_of_missing_passages(files):
    write_qrels({"3": {"0": 3, "99": 2}, "4": {"0": 1}, "5": {"7": 2}}, files["qrels"])
    ranking_set = load_msmarco_files(**files, unknown_qrels="keep")
    assert ranking_set.qrels == {"3": {"0": 3, "99": 2}, "5": {"7": 2}}  # qid 4 is unknown: dropped
    assert "99" not in ranking_set.corpus


def test_run_naming_unknown_pid_is_an_error_even_when_dropping_qrels(files):
    files["run"].write_text("3 Q0 0 1 2.0 t\n3 Q0 55 2 1.0 t\n")
    assert _error(lambda _: load_msmarco_files(**files, unknown_qrels="drop"), files["run"]) == (
        f"{files['run']}:2: pid 55 is not in the collection"
    )


# ------------------------------------------------------------------------------------------- load_triples


def test_load_triples_builds_judgments_and_a_candidate_run(tmp_path):
    path = tmp_path / "triples.tsv"
    write_triples([*TRIPLES, ("q one", "neg b", "pos a")], path)  # last line: "neg b" is also a positive
    ranking_set = load_triples(path)
    q1, q2 = text_id("q one"), text_id("q two")
    a, b, c, d = (text_id(t) for t in ("pos a", "neg b", "neg c", "pos d"))
    assert ranking_set.queries == {q1: "q one", q2: "q two"}
    assert ranking_set.corpus == {a: "pos a", b: "neg b", c: "neg c", d: "pos d"}
    assert ranking_set.qrels == {q1: {a: 1, b: 1, c: 0}, q2: {d: 1, b: 0}}
    # First-seen order: each line's positive before its negative.
    assert ranking_set.run == {q1: {a: 3.0, b: 2.0, c: 1.0}, q2: {d: 2.0, b: 1.0}}
    assert ranking_set.fingerprints == {str(path): hashlib.sha256(path.read_bytes()).hexdigest()}


def test_text_ids_are_deterministic_digit_strings():
    assert text_id("pos a") == text_id("pos a") != text_id("pos b")
    assert text_id("pos a").isdigit()
    assert int(text_id("pos a")) < 16**15
