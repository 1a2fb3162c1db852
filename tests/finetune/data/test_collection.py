"""The on-disk collection: the block reader agrees with the line-by-line one on every file, valid or not."""

import hashlib
import pickle
import random

import pytest

from finetune.data import msmarco
from finetune.data.collection import Collection
from finetune.data.msmarco import _parse_id_text, read_collection
from finetune.data.types import DataFormatError

# Lines a collection can hold, good and bad: each bad one is an error the readers word identically.
GOOD = [b"1\ta b", b"22\tc\r", b"333\t \xc3\xa7a", b"4\t\xc2\x85x", b"5\tx\ry", b"0007\tseven", b"8\t\x1cz",
        b"9\tcaf\xc3\xa9 au lait"]
BAD = [b"", b"  ", b"\r", b"1\ta\tb", b"x1\ta", b"-1\ta", b"1 a", b"\ta", b"1\t", b"1\t \r", b"1\t\xc2\x85",
       b"1\tcaf\xe9", b"+1\ta", b"1\t\r\r"]


def _old(path):
    """The dict the line-by-line reader builds (what read_collection returned before the Collection)."""
    return _parse_id_text(path, "pid", "passage")


def _outcome(read, path):
    try:
        return dict(read(path))
    except DataFormatError as err:
        return str(err)


@pytest.mark.parametrize("block", [7, 64, 1 << 20])
def test_block_reader_agrees_with_the_line_reader(tmp_path, monkeypatch, block):
    """300 random files (duplicate pids, blank lines, \\r\\n, no final line end, bad lines) read both ways."""
    monkeypatch.setattr(msmarco, "_COLLECTION_BLOCK", block)
    rng = random.Random(block)
    path = tmp_path / "collection.tsv"
    errors = 0
    for _ in range(300):
        lines = []
        for _ in range(rng.randint(0, 8)):
            line = rng.choice(GOOD) if rng.random() < 0.85 else rng.choice(BAD)
            pid = str(rng.randint(0, 12)).encode()
            lines.append(pid + line[line.index(b"\t"):] if b"\t" in line and rng.random() < 0.5 else line)
        text = b"\n".join(lines) + rng.choice([b"", b"\n", b"\r\n", b"\n\n", b"\n \n"])
        path.write_bytes(text)
        expected = _outcome(_old, path)
        assert _outcome(read_collection, path) == expected, text
        errors += isinstance(expected, str)
    assert 30 < errors < 270  # both outcomes were exercised


def test_collection_behaves_as_the_dict(tmp_path):
    path = tmp_path / "collection.tsv"
    path.write_bytes("10\tten\r\n2\tdeux \u2028 zwei\n007\tseven\n".encode())
    corpus = read_collection(path)

    assert isinstance(corpus, Collection)
    assert corpus == {"10": "ten", "2": "deux \u2028 zwei", "007": "seven"}
    assert list(corpus) == ["10", "2", "007"] and len(corpus) == 3
    assert list(corpus.values()) == ["ten", "deux \u2028 zwei", "seven"]
    assert list(corpus.items())[1] == ("2", "deux \u2028 zwei")
    assert corpus["007"] == "seven" and corpus.get("7") is None and "7" not in corpus
    assert "0000000010" not in corpus and 10 not in corpus  # longer than any pid, and not a str
    with pytest.raises(KeyError):
        corpus["3"]
    assert sorted(corpus) == [list(corpus)[i] for i in corpus.sorted_positions()]
    assert pickle.loads(pickle.dumps(corpus)) == corpus


def test_a_changed_file_is_not_read_silently(tmp_path):
    path = tmp_path / "collection.tsv"
    path.write_bytes(b"1\tone\n2\ttwo\n")
    corpus = read_collection(path)
    path.write_bytes(b"1\tuno\n2\tdos\n")

    with pytest.raises(DataFormatError, match="changed since it was read"):
        corpus["1"]


def test_fingerprint_covers_every_byte_on_both_paths(tmp_path, monkeypatch):
    """The digest of a clean file (block path) and of one with trailing blank lines (line path) is the file's."""
    monkeypatch.setattr(msmarco, "_COLLECTION_BLOCK", 16)
    for text in (b"1\ta b c\n2\td e f\n3\tg\n", b"1\ta b c\n2\td e f\n3\tg\n\n \n"):
        path = tmp_path / "collection.tsv"
        path.write_bytes(text)
        digest = hashlib.sha256()
        corpus = msmarco._read_collection(path, digest)
        assert digest.hexdigest() == hashlib.sha256(text).hexdigest()
        assert corpus == {"1": "a b c", "2": "d e f", "3": "g"}
