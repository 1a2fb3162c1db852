"""Preference data: HH-RLHF prompt split on multi-turn transcripts, gzip, format errors, the learnable demo."""

import gzip
import json

import pytest

from finetune.data.preferences import (
    load_preference_data,
    read_preferences,
    split_hh_transcripts,
    write_demo_preferences,
)
from finetune.data.types import DataFormatError
from finetune.params import DemoPreferences, PreferenceDataParams

# Real-looking HH-RLHF records: two human turns; both answers of the last turn start with the same word.
HISTORY = ("\n\nHuman: How can I find out what types of butterflies are in my area?\n\nAssistant: Which location "
           "are you in?\n\nHuman: I am in Oregon.\n\nAssistant:")
CHOSEN = HISTORY + " There are about 175 species of butterflies in Oregon."
REJECTED = HISTORY + " There are many, would you like a list?"


def test_hh_split_takes_the_shared_prefix_up_to_the_last_assistant_turn():
    prompt, chosen, rejected = split_hh_transcripts(CHOSEN, REJECTED)
    assert prompt == HISTORY  # ends at the last "\n\nAssistant:", not inside the shared " There are"
    assert chosen == " There are about 175 species of butterflies in Oregon."
    assert rejected == " There are many, would you like a list?"
    # Transcripts that differ before the last assistant turn: the prompt ends at the last marker they share.
    earlier = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant: Bye!"
    other = "\n\nHuman: Hi\n\nAssistant: Hey.\n\nHuman: Bye\n\nAssistant: Bye!"
    assert split_hh_transcripts(earlier, other) == ("\n\nHuman: Hi\n\nAssistant:", " Hello!\n\nHuman: Bye\n\n"
                                                    "Assistant: Bye!", " Hey.\n\nHuman: Bye\n\nAssistant: Bye!")
    assert split_hh_transcripts("\n\nHuman: a\n\nAssistant: b", "\n\nHuman: c\n\nAssistant: b") is None


def _write(path, records, gz=False):
    text = "".join(json.dumps(r) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def test_reads_gzipped_transcripts_and_plain_pairs_and_drops_identical_pairs(tmp_path):
    path = _write(tmp_path / "hh.jsonl.gz", [{"chosen": CHOSEN, "rejected": REJECTED},
                                            {"chosen": CHOSEN, "rejected": CHOSEN}], gz=True)
    frame = read_preferences(path)
    assert frame.to_dict("records") == [{"prompt": HISTORY, "chosen": CHOSEN[len(HISTORY):],
                                         "rejected": REJECTED[len(HISTORY):]}]
    assert frame.attrs["identical_pairs_dropped"] == 1
    pairs = _write(tmp_path / "p.jsonl", [{"prompt": "Q:", "chosen": " yes", "rejected": " no"}])
    assert read_preferences(pairs, "pairs").iloc[0].tolist() == ["Q:", " yes", " no"]


@pytest.mark.parametrize(("record", "fmt", "message"), [
    ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}, "auto",
     "chosen and rejected share no prefix ending in '\\n\\nAssistant:'"),
    ({"chosen": "x"}, "auto", "needs string fields 'chosen' and 'rejected'"),
    ({"chosen": "x", "rejected": "y"}, "pairs", "needs a string field 'prompt' (format pairs)"),
])
def test_malformed_records_give_one_line_naming_path_and_line(tmp_path, record, fmt, message):
    good = {"prompt": "Q:", "chosen": " yes", "rejected": " no"}
    path = _write(tmp_path / "bad.jsonl", [good, good, record])
    with pytest.raises(DataFormatError) as error:
        read_preferences(path, fmt)
    assert str(error.value) == f"{path}:3: {message}"


def test_demo_pairs_are_deterministic_and_split(tmp_path):
    first = write_demo_preferences(tmp_path / "a", 50, seed=4).read_bytes()
    assert first == write_demo_preferences(tmp_path / "b", 50, seed=4).read_bytes()
    frame = read_preferences(tmp_path / "a" / "preferences.jsonl")
    assert (frame["chosen"] != frame["rejected"]).all() and frame["prompt"].str.startswith("Question: ").all()
    # Chosen and rejected differ only in the fact, the last word: the same sentence frame.
    pairs = zip(frame["chosen"], frame["rejected"], strict=True)
    assert all(c.split()[:-1] == r.split()[:-1] and c != r for c, r in pairs)
    params = PreferenceDataParams(source=DemoPreferences(output_dir=tmp_path / "c", num_pairs=50), test_fraction=0.2)
    train, test, counts = load_preference_data(params)
    assert (len(train), len(test)) == (40, 10) and counts == {"pairs": 50, "identical_pairs_dropped": 0}
