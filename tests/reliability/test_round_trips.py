"""Exact round trips through every materializer and text file format, for any Unicode text.

``str.splitlines`` splits at U+0085, U+2028, U+2029, ``\\x1c``-``\\x1e``, ``\\x0b`` and ``\\x0c`` as well as at
``\\n``, and text-mode files turn a lone ``\\r`` into a line end; five real MS MARCO passages hold U+0085. Each
property writes adversarial strings (those characters, tabs where the format allows them, ``\\r\\n``, lone
``\\r``, empty strings, 12k-character lines, non-BMP characters) and reads back exactly what was written; what a
format cannot hold is refused with a one-line error.
"""

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from finetune.data.arc import load_arc_jsonl, to_arc_record
from finetune.data.instructions import read_instruction_file
from finetune.data.msmarco import (
    load_msmarco_files,
    load_triples,
    read_collection,
    read_qrels,
    read_queries,
    read_trec_run,
    read_triples,
    write_collection,
    write_qrels,
    write_queries,
    write_trec_run,
    write_triples,
)
from finetune.data.preferences import read_preferences
from finetune.data.rag_demo import write_intents
from finetune.data.text import read_text_lines
from finetune.data.types import DataFormatError, RankingSet, TrecRun
from finetune.generation.rag import read_intents
from finetune.models.directory import ModelDirectory
from materializers import ModelDirectoryMaterializer, RankingSetMaterializer, TrecRunMaterializer

# The bench scripts' location of the shared real data: next to the repository root.
EVALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata"
DEV_SMALL_600 = EVALDATA / "msmarco-passage" / "dev-small-600"

# Small enough that the file runs in a few seconds on 2 cores; no example database in the shared working tree.
PROPERTY = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

LONG = "ab\U0001f600" * 4000  # 12,000 characters, a third of them outside the BMP
ADVERSARIAL = ["\x85", "\u2028", "\u2029", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c", "\t", "\r\n", "\r", "\n",
               "\\", "\\t", "\\s", " ", "\U0001f600", "\U00010348", "\ufeff", LONG]


def texts(forbid: str = "", nonblank: bool = False) -> st.SearchStrategy[str]:
    """Strings built from adversarial pieces and random UTF-8-encodable text, without the ``forbid`` characters."""
    pieces = st.one_of(
        st.sampled_from([p for p in ADVERSARIAL if not any(c in p for c in forbid)]),
        st.text(st.characters(codec="utf-8", exclude_characters=forbid), max_size=6),
    )
    strategy = st.lists(pieces, max_size=5).map("".join)
    return strategy.filter(lambda s: bool(s.strip())) if nonblank else strategy


ids = st.from_regex(r"[0-9]{1,6}", fullmatch=True)
scores = st.floats(allow_nan=False)


def _fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="round-trip-"))


# ----------------------------------------------------------------------------------------------- materializers


@st.composite
def ranking_sets(draw, key=texts(), text=texts()) -> RankingSet:
    corpus = draw(st.dictionaries(key, text, max_size=4))
    queries = draw(st.dictionaries(key, text, max_size=4))
    grades = st.dictionaries(key, st.integers(0, 3), max_size=3)
    qrels = draw(st.dictionaries(key, grades, max_size=3))
    run = draw(st.none() | st.dictionaries(key, st.dictionaries(key, scores, max_size=3), max_size=3))
    fingerprints = draw(st.dictionaries(texts(), texts(), max_size=2))
    return RankingSet(draw(texts()), corpus, queries, qrels, run, fingerprints)


@PROPERTY
@given(data=ranking_sets())
def test_ranking_set_materializer_round_trips_any_strings(data, zenml_client):
    m = RankingSetMaterializer(str(_fresh_dir()))
    m.save(data)
    assert m.load(RankingSet) == data


@PROPERTY
@given(data=ranking_sets(key=ids, text=texts(forbid="\t\n\r", nonblank=True)))
def test_ranking_set_materializer_keeps_ordinary_data_in_the_official_formats(data, zenml_client):
    """Without a tab or line break in any field nothing is escaped: the strict MS MARCO readers read the files."""
    uri = _fresh_dir()
    m = RankingSetMaterializer(str(uri))
    m.save(data)
    assert json.loads((uri / "meta.json").read_text())["escaped"] == []
    if data.corpus:
        assert read_collection(uri / "collection.tsv") == data.corpus
    if any(data.qrels.values()):
        assert read_qrels(uri / "qrels.txt") == {q: j for q, j in data.qrels.items() if j}
    assert m.load(RankingSet) == data


def test_ranking_set_materializer_escapes_only_the_file_that_needs_it(tmp_path, zenml_client):
    data = RankingSet("n", {"1": "a\tb\\c", "2": "x\x85y"}, {"3": "back\\slash"}, {"3 4": {"1": 1}},
                      run={"3": {"1": 1.5}})
    m = RankingSetMaterializer(str(tmp_path))
    m.save(data)
    assert json.loads((tmp_path / "meta.json").read_text())["escaped"] == ["collection.tsv", "qrels.txt"]
    assert (tmp_path / "collection.tsv").read_bytes() == "1\ta\\tb\\\\c\n2\tx\x85y\n".encode()
    assert (tmp_path / "queries.tsv").read_bytes() == b"3\tback\\slash\n"
    assert (tmp_path / "qrels.txt").read_bytes() == b"3\\s4 0 1 1\n"
    assert m.load(RankingSet) == data


def test_ranking_set_materializer_reads_artifacts_written_before_escaping(tmp_path, zenml_client):
    """Older artifacts have no ``escaped`` list in meta.json: they load as unescaped, split at "\\n" only."""
    (tmp_path / "collection.tsv").write_bytes("1\tone\x85two \\n\n2\tthree\u2028four\n".encode())
    (tmp_path / "queries.tsv").write_bytes(b"7\tq\n")
    (tmp_path / "qrels.txt").write_bytes(b"7 0 1 1\n")
    (tmp_path / "meta.json").write_text(json.dumps({"name": "old", "fingerprints": {}, "has_run": False}))
    loaded = RankingSetMaterializer(str(tmp_path)).load(RankingSet)
    assert loaded.corpus == {"1": "one\x85two \\n", "2": "three\u2028four"}
    assert (loaded.queries, loaded.qrels) == ({"7": "q"}, {"7": {"1": 1}})


def test_ranking_set_materializer_names_file_and_line_of_a_damaged_artifact(tmp_path, zenml_client):
    m = RankingSetMaterializer(str(tmp_path))
    m.save(RankingSet("n", {"1": "a"}, {"2": "q"}, {}))
    (tmp_path / "collection.tsv").write_bytes(b"1\ta\nno tab\n")
    with pytest.raises(DataFormatError) as info:
        m.load(RankingSet)
    assert str(info.value) == f"{tmp_path / 'collection.tsv'}:2: expected 2 fields separated by '\\t', found 1"
    (tmp_path / "collection.tsv").write_bytes(b"1\ta\xff\n")
    with pytest.raises(DataFormatError) as info:
        m.load(RankingSet)
    assert str(info.value) == f"{tmp_path / 'collection.tsv'}: not UTF-8 text (byte 0xff at offset 3)"


@PROPERTY
@given(name=texts(), run=st.dictionaries(texts(), st.dictionaries(texts(), scores, max_size=3), max_size=3))
def test_trec_run_materializer_round_trips_any_strings(name, run, zenml_client):
    m = TrecRunMaterializer(str(_fresh_dir()))
    m.save(TrecRun(name, run))
    assert m.load(TrecRun) == TrecRun(name, run)


@PROPERTY
@given(kind=texts(), base_model=texts(), num_parameters=st.integers(0, 2**40))
def test_model_directory_materializer_round_trips_any_strings(kind, base_model, num_parameters, zenml_client):
    src = _fresh_dir()
    (src / "config.json").write_bytes("{\"x\": \"\u2028\"}\r\n".encode())
    m = ModelDirectoryMaterializer(str(_fresh_dir()))
    m.save(ModelDirectory(src, kind, base_model, num_parameters))
    loaded = m.load(ModelDirectory)
    assert (loaded.kind, loaded.base_model, loaded.num_parameters) == (kind, base_model, num_parameters)
    assert (Path(loaded.path) / "config.json").read_bytes() == (src / "config.json").read_bytes()


# ----------------------------------------------------------------------------------------------- MS MARCO formats

# Official TSV fields hold anything but a tab or a line break, and never only whitespace.
tsv_texts = texts(forbid="\t\n\r", nonblank=True)


@PROPERTY
@given(corpus=st.dictionaries(ids, tsv_texts, min_size=1, max_size=4),
       queries=st.dictionaries(ids, tsv_texts, min_size=1, max_size=4),
       triples=st.lists(st.tuples(tsv_texts, tsv_texts, tsv_texts), min_size=1, max_size=3))
def test_msmarco_tsv_writers_and_readers_round_trip(corpus, queries, triples):
    out = _fresh_dir()
    write_collection(corpus, out / "collection.tsv")
    write_queries(queries, out / "queries.tsv")
    write_triples(triples, out / "triples.tsv")
    assert read_collection(out / "collection.tsv") == corpus
    assert read_queries(out / "queries.tsv") == queries
    assert read_triples(out / "triples.tsv") == triples
    loaded = load_triples(out / "triples.tsv")
    assert set(loaded.queries.values()) == {q for q, _, _ in triples}
    assert set(loaded.corpus.values()) == {t for _, p, n in triples for t in (p, n)}


@PROPERTY
@given(qrels=st.dictionaries(ids, st.dictionaries(ids, st.integers(0, 3), min_size=1, max_size=3),
                             min_size=1, max_size=3),
       run=st.dictionaries(ids, st.dictionaries(ids, st.floats(allow_nan=False, allow_infinity=False),
                                                min_size=1, max_size=3), min_size=1, max_size=3),
       tag=texts(forbid=" \t\n\r\x85\u2028\u2029\x1c\x1d\x1e\x1f\x0b\x0c").filter(lambda t: t.split() == [t]))
def test_trec_qrels_and_run_round_trip(qrels, run, tag):
    out = _fresh_dir()
    write_qrels(qrels, out / "qrels.txt")
    write_trec_run(run, out / "run.trec", tag=tag)
    assert read_qrels(out / "qrels.txt") == qrels
    assert read_trec_run(out / "run.trec") == run


@pytest.mark.parametrize("text, shown", [("a\tb", "'a\\tb'"), ("a\nb", "'a\\nb'"), ("a\rb", "'a\\rb'"),
                                         (" \x85", "' \\x85'")])
def test_msmarco_writer_refuses_a_field_the_tsv_cannot_hold(tmp_path, text, shown):
    with pytest.raises(ValueError) as info:
        write_collection({"7": text}, tmp_path / "collection.tsv")
    assert str(info.value) == f"passage for '7' is empty or contains a tab or line break: {shown}"


# ----------------------------------------------------------------------------------------------- JSON Lines


@PROPERTY
@given(records=st.lists(st.tuples(texts(), texts(nonblank=True)), min_size=1, max_size=4),
       line_end=st.sampled_from(["\n", "\r\n"]), layout=st.sampled_from([".jsonl", ".json"]))
def test_instruction_files_round_trip_raw_line_separators(records, line_end, layout):
    """``ensure_ascii=False`` writes U+0085, U+2028 and U+2029 raw, as JSON allows, inside one JSON Lines line."""
    rows = [{"prompt": p, "response": r} for p, r in records]
    path = _fresh_dir() / f"data{layout}"
    if layout == ".json":
        text = json.dumps(rows, ensure_ascii=False, indent=1).replace("\n", line_end)
    else:
        text = "".join(json.dumps(row, ensure_ascii=False) + line_end for row in rows)
    path.write_bytes(text.encode("utf-8"))
    frame = read_instruction_file(path)
    assert list(zip(frame["prompt"], frame["response"], strict=True)) == records


@PROPERTY
@given(triples=st.lists(st.tuples(texts(), texts(), texts()), min_size=1, max_size=4), gz=st.booleans())
def test_preference_pairs_round_trip(triples, gz):
    kept = [t for t in triples if t[1] != t[2]]  # identical completions carry no preference and are dropped
    assume(kept)
    data = "".join(json.dumps(dict(zip(("prompt", "chosen", "rejected"), t, strict=True)), ensure_ascii=False)
                   + "\r\n" for t in triples).encode("utf-8")
    path = _fresh_dir() / ("pairs.jsonl.gz" if gz else "pairs.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    frame = read_preferences(path, "pairs")
    assert [tuple(row) for row in frame.itertuples(index=False)] == kept


@PROPERTY
@given(questions=st.lists(st.tuples(texts(), texts(nonblank=True),
                                    st.lists(texts(nonblank=True), min_size=2, max_size=5), st.integers(0, 4)),
                          min_size=1, max_size=3))
def test_arc_questions_round_trip(questions):
    records = []
    for qid, stem, choices, answer in questions:
        labels = [chr(ord("A") + i) for i in range(len(choices))]
        records.append({"id": qid, "question": {"stem": stem, "choices": [
            {"text": t, "label": label} for t, label in zip(choices, labels, strict=True)]},
            "answerKey": labels[answer % len(labels)]})
    path = _fresh_dir() / "arc.jsonl"
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
    assert [to_arc_record(q) for q in load_arc_jsonl(path)] == records


def test_arc_file_with_bad_bytes_names_file_and_line(tmp_path):
    path = tmp_path / "arc.jsonl"
    good = {"question": {"stem": "s", "choices": [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}]},
            "answerKey": "A"}
    path.write_bytes(json.dumps(good).encode() + b'\n{"id": "\xe9"}\n')
    with pytest.raises(DataFormatError) as info:
        load_arc_jsonl(path)
    assert str(info.value) == f"{path}:2: not valid UTF-8 (byte 0xe9 at offset 8 of the line)"


# ----------------------------------------------------------------------------------------------- plain text, intents


@PROPERTY
@given(lines=st.lists(texts(forbid="\n").filter(lambda s: not s.endswith("\r")), min_size=1, max_size=5),
       line_end=st.sampled_from(["\n", "\r\n"]), final=st.booleans())
def test_text_lines_round_trip(lines, line_end, final):
    """Lines end at "\\n" or "\\r\\n" only; a lone "\\r" and every other Unicode line boundary stay inside."""
    assume("".join(lines).strip())
    assume(final or lines[-1])  # without a final line end, a trailing empty line is no line
    path = _fresh_dir() / "corpus.txt"
    path.write_bytes((line_end.join(lines) + (line_end if final else "")).encode("utf-8"))
    assert read_text_lines(path) == lines


@PROPERTY
@given(intents=st.dictionaries(texts(forbid="\t\n\r"),
                               texts(forbid="\t\n\r", nonblank=True).map(str.strip).filter(bool), max_size=5))
def test_intents_round_trip(intents):
    assume(intents)
    path = _fresh_dir() / "intents.tsv"
    write_intents(intents, path)
    assert read_intents(path) == intents


def test_intents_file_that_is_not_utf8_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "intents.tsv"
    path.write_bytes(b"1\tfind a\n2\tfind \xff\n")
    with pytest.raises(DataFormatError) as info:
        read_intents(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 0xff at offset 16)"


@pytest.mark.parametrize("intent", ["a\tb", "a\nb", "a\rb", " padded", "x\u2028", ""])
def test_intents_writer_refuses_what_the_reader_would_change(tmp_path, intent):
    with pytest.raises(ValueError) as info:
        write_intents({"q1": intent}, tmp_path / "intents.tsv")
    assert str(info.value) == (f"query 'q1': intent {intent!r} is empty, has surrounding whitespace or contains "
                               "a tab or line break")


# ----------------------------------------------------------------------------------------------- real data


def test_real_dev_small_600_round_trips_through_the_materializer(tmp_path, zenml_client):
    """Five dev-small-600 passages hold U+0085, which ``str.splitlines`` took for a line end (pipelines trained on
    the set died loading ``train_set``); none holds a tab or line break, so the artifact stays official TSV."""
    if not DEV_SMALL_600.is_dir():
        pytest.skip(f"{DEV_SMALL_600} not found (real-data checks need ../shared/evaldata)")
    data = load_msmarco_files(DEV_SMALL_600 / "collection.tsv", DEV_SMALL_600 / "queries.tsv",
                              DEV_SMALL_600 / "qrels.txt", run=DEV_SMALL_600 / "run.bm25.top20.trec",
                              name="dev-small-600", unknown_qrels="keep")
    assert (len(data.queries), len(data.corpus), data.counts()["judgments"]) == (600, 11809, 600)
    assert len([t for t in data.corpus.values() if "\x85" in t]) == 5
    m = RankingSetMaterializer(str(tmp_path))
    m.save(data)
    assert json.loads((tmp_path / "meta.json").read_text())["escaped"] == []
    assert m.load(RankingSet) == data
    assert read_collection(tmp_path / "collection.tsv") == data.corpus
    train = data.subset(sorted(data.queries)[:300], "train")
    m = RankingSetMaterializer(str(tmp_path / "train"))
    (tmp_path / "train").mkdir()
    m.save(train)
    assert m.load(RankingSet) == train
