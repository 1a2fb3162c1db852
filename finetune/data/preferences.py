"""Preference pairs for DPO: JSONL prompt/chosen/rejected, Anthropic HH-RLHF transcripts, and an embedded demo.

HH-RLHF records hold two whole dialogues (``"\\n\\nHuman: ... \\n\\nAssistant: ..."``) that differ only in the last
assistant turn; the prompt is their shared prefix up to and including the last ``"\\n\\nAssistant:"`` and the
completions are what follows it. Files may be gzipped (the released ``*.jsonl.gz``).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pandas as pd

from finetune.data.demo import demo_folder
from finetune.data.demo_text import demo_world
from finetune.data.instructions import split_frame
from finetune.data.msmarco import sha256_file
from finetune.data.types import DataFormatError
from finetune.params import DemoPreferences, PreferenceDataParams, PreferenceFile

ASSISTANT = "\n\nAssistant:"
PAIR_COLUMNS = ["prompt", "chosen", "rejected"]


def split_hh_transcripts(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """``(prompt, chosen completion, rejected completion)`` of an HH-RLHF record, or None without a shared prompt.

    The prompt is the longest common prefix of both transcripts, cut back to end at its last ``"\\n\\nAssistant:"``
    (the answers may share their first characters; those belong to the completions).
    """
    common = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        common += 1
    end = chosen.rfind(ASSISTANT, 0, common)  # the marker must lie wholly inside the shared prefix
    if end < 0:
        return None
    cut = end + len(ASSISTANT)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _open_bytes(path: Path):
    # Bytes, decoded line by line, so invalid UTF-8 is reported with its line number.
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_preferences(path: str | Path, fmt: str = "auto") -> pd.DataFrame:
    """Read a preference JSONL file (optionally ``.gz``) into a ``prompt, chosen, rejected`` table.

    Pairs whose completions are identical carry no preference (HH-RLHF helpful-base test has a few); they are
    dropped and counted in ``frame.attrs["identical_pairs_dropped"]``.

    Raises:
        DataFormatError: One line ``<path>:<line>: ...`` for invalid UTF-8 or JSON, missing fields, a transcript
            pair with no shared prefix ending in ``"\\n\\nAssistant:"``.
        FileNotFoundError: No such file.
    """
    path = Path(path)
    if path.is_dir():
        raise DataFormatError(f"{path}: is a directory, expected a preference JSONL file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such preference file")
    rows, identical = [], 0
    with _open_bytes(path) as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataFormatError(f"{path}:{number}: not valid UTF-8") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("chosen", "rejected")):
                raise DataFormatError(f"{path}:{number}: needs string fields 'chosen' and 'rejected'")
            transcripts = fmt == "hh_rlhf" or (fmt == "auto" and "prompt" not in record)
            if transcripts:
                split = split_hh_transcripts(record["chosen"], record["rejected"])
                if split is None:
                    raise DataFormatError(f"{path}:{number}: chosen and rejected share no prefix ending in "
                                          f"{ASSISTANT!r}")
            elif not isinstance(record.get("prompt"), str):
                raise DataFormatError(f"{path}:{number}: needs a string field 'prompt' (format {fmt})")
            else:
                split = record["prompt"], record["chosen"], record["rejected"]
            if split[1] == split[2]:
                identical += 1
                continue
            rows.append(split)
    if not rows:
        raise DataFormatError(f"{path}: no preference records with different chosen and rejected completions")
    frame = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    frame.attrs["identical_pairs_dropped"] = identical
    return frame


def write_demo_preferences(output_dir: str | Path, num_pairs: int = 400, seed: int = 0) -> Path:
    """Write learnable preference pairs about the demo world to ``<output_dir>/preferences.jsonl``.

    Each pair asks for a capital, export or neighbour of a place; chosen states the true fact, rejected the same
    sentence with a value of the wrong kind (a good where a city belongs, a city where a good belongs). The kind
    of answer each question wants is a rule a tiny model learns from a few hundred pairs and applies to held-out
    pairs, so preference accuracy rises above chance; the exact fact would need memorising all 72. Same arguments,
    same bytes.
    """
    world = demo_world(seed)
    rng = random.Random(seed + 1)
    path = demo_folder(output_dir) / "preferences.jsonl"
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for _ in range(num_pairs):
            place, other = rng.sample(world, 2)
            kind = rng.randrange(3)
            if kind == 0:
                question, answer = f"What is the capital of {place.name}?", "The capital of {} is {}."
                right, wrong = place.capital, other.export
            elif kind == 1:
                question, answer = f"What does {place.name} export?", "{} mainly exports {}."
                right, wrong = place.export, other.capital
            else:
                question, answer = f"Which country borders {place.name}?", "{} borders {}."
                right, wrong = place.neighbour, rng.choice((other.capital, other.export))
            record = {"prompt": f"Question: {question}\nAnswer:", "chosen": " " + answer.format(place.name, right),
                      "rejected": " " + answer.format(place.name, wrong)}
            handle.write(json.dumps(record) + "\n")
    return path


def preference_files(params: PreferenceDataParams) -> list[Path]:
    """The file the source reads (the demo file is written first)."""
    source = params.source
    if isinstance(source, DemoPreferences):
        return [write_demo_preferences(source.output_dir, source.num_pairs, source.seed)]
    return [source.path]


def fingerprint_preferences(params: PreferenceDataParams) -> dict[str, str]:
    """sha256 of the preference file."""
    return {str(p): sha256_file(p, "a preference JSONL file") for p in preference_files(params)}


def load_preference_data(params: PreferenceDataParams) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Preference pairs split by a seeded shuffle into training and held-out tables (``prompt, chosen, rejected``).

    Returns:
        ``(train, test, counts)`` with counts ``pairs`` (read and kept) and ``identical_pairs_dropped``.
    """
    source = params.source
    fmt = source.format if isinstance(source, PreferenceFile) else "pairs"
    frame = read_preferences(preference_files(params)[0], fmt)
    dropped = frame.attrs["identical_pairs_dropped"]
    if params.max_pairs is not None:
        frame = frame.head(params.max_pairs)
    train, _, test = split_frame(frame, 0.0, params.test_fraction, params.split_seed)
    if train.empty or test.empty:
        raise ValueError(f"{len(frame)} preference pairs are too few for test_fraction {params.test_fraction}")
    return train, test, {"pairs": len(frame), "identical_pairs_dropped": dropped}
