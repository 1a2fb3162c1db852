"""Multiple-choice questions in the ARC JSON Lines layout (AI2 Reasoning Challenge, ARC-V1-Feb2018 files).

One question per line::

    {"id": "MCAS_2000_4_6",
     "question": {"stem": "Which technology was developed most recently?",
                  "choices": [{"text": "cellular telephone", "label": "A"}, {"text": "television", "label": "B"}]},
     "answerKey": "A"}

Labels are usually ``A``-``D`` but some questions use ``1``-``4`` and a few have 3 or 5 choices, so the answer is
found by label, never by position. Every malformed line raises :class:`DataFormatError` with a one-line message
``<path>:<line>: <what is wrong>`` (1-based); blank lines are skipped.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from finetune.data.demo import demo_folder
from finetune.data.msmarco import require_file, sha256_file
from finetune.data.types import DataFormatError
from finetune.params import DemoArc, MultipleChoiceDataParams


@dataclass(frozen=True)
class MultipleChoiceQuestion:
    """One question with its options.

    Attributes:
        id: The question id (``id`` field; ``<file stem>-<line>`` when the line has none).
        stem: The question text.
        choices: Option texts in file order.
        labels: Option labels in file order (``A``... or ``1``...).
        answer: Index into ``choices`` of the correct option.
    """

    id: str
    stem: str
    choices: tuple[str, ...]
    labels: tuple[str, ...]
    answer: int


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def parse_arc_record(record: object, default_id: str) -> MultipleChoiceQuestion:
    """Validate one decoded ARC record.

    Args:
        record: The decoded JSON value of one line.
        default_id: The id to use when the record has none.

    Returns:
        The question.

    Raises:
        ValueError: The record does not have the ARC layout; the message names the offending field.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    question = record.get("question")
    if not isinstance(question, dict):
        raise ValueError("missing object 'question'")
    stem, choices = question.get("stem"), question.get("choices")
    if not _nonempty_str(stem):
        raise ValueError("'question.stem' must be a non-empty string")
    if not isinstance(choices, list) or len(choices) < 2:
        raise ValueError("'question.choices' must be a list of at least 2 options")
    texts, labels = [], []
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict) or not _nonempty_str(choice.get("text")) or not _nonempty_str(
            choice.get("label")
        ):
            raise ValueError(f"'question.choices[{i}]' needs non-empty string 'text' and 'label'")
        texts.append(choice["text"])
        labels.append(choice["label"].strip())
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate choice labels {labels}")
    key = record.get("answerKey")
    if not isinstance(key, str) or key.strip() not in labels:
        raise ValueError(f"'answerKey' {key!r} is not one of the choice labels {labels}")
    qid = record.get("id", default_id)
    return MultipleChoiceQuestion(str(qid), stem, tuple(texts), tuple(labels), labels.index(key.strip()))


def load_arc_jsonl(path: str | Path, limit: int | None = None) -> list[MultipleChoiceQuestion]:
    """Read an ARC JSONL file strictly.

    Args:
        path: The file (UTF-8).
        limit: Keep only the first ``limit`` questions (the rest of the file is not read).

    Returns:
        The questions in file order.

    Raises:
        DataFormatError: ``<path>:<line>: <reason>`` for the first malformed line, a file without questions, a
            directory or no such file.
    """
    path = require_file(path, "an ARC-format JSONL file")
    questions: list[MultipleChoiceQuestion] = []
    # Binary lines end at b"\n" only: text mode would also end one at a lone "\r" (JSON whitespace) and raise a
    # bare UnicodeDecodeError on bad bytes.
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if limit is not None and len(questions) >= limit:
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                where = f"byte 0x{raw[error.start]:02x} at offset {error.start} of the line"
                raise DataFormatError(f"{path}:{number}: not valid UTF-8 ({where})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{path}:{number}: invalid JSON ({error.msg} at column {error.colno})") from None
            try:
                questions.append(parse_arc_record(record, f"{path.stem}-{number}"))
            except ValueError as error:
                raise DataFormatError(f"{path}:{number}: {error}") from None
    if not questions:
        raise DataFormatError(f"{path}:1: no questions in the file")
    return questions


def _demo_question(rng: random.Random, index: int) -> dict:
    """One arithmetic question in the ARC layout; every fifth uses digit labels, option counts vary 3-5."""
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    operation, answer = rng.choice([("plus", a + b), ("times", a * b), ("minus", a - b)])
    count = rng.choice([3, 4, 4, 4, 5])
    wrong = set()
    while len(wrong) < count - 1:
        candidate = answer + rng.choice([-1, 1]) * rng.randint(1, 10)
        if candidate != answer:
            wrong.add(candidate)
    options = [answer, *sorted(wrong)]
    rng.shuffle(options)
    labels = [str(i + 1) for i in range(count)] if index % 5 == 4 else [chr(ord("A") + i) for i in range(count)]
    return {
        "id": f"demo-{index}",
        "question": {
            "stem": f"What is {a} {operation} {b}?",
            "choices": [{"text": str(value), "label": label} for value, label in zip(options, labels, strict=True)],
        },
        "answerKey": labels[options.index(answer)],
    }


def write_demo_arc(output_dir: str | Path, num_questions: int = 60, seed: int = 0) -> tuple[Path, Path]:
    """Write ``train.jsonl`` and ``test.jsonl`` of made-up arithmetic questions in the ARC layout.

    Half the questions go to each file. The same arguments give byte-identical files.

    Returns:
        ``(train path, test path)``.
    """
    rng = random.Random(seed)
    questions = [_demo_question(rng, i) for i in range(num_questions)]
    out = demo_folder(output_dir)
    paths = out / "train.jsonl", out / "test.jsonl"
    half = num_questions // 2
    for path, part in zip(paths, (questions[:half], questions[half:]), strict=True):
        path.write_text("".join(json.dumps(q) + "\n" for q in part), encoding="utf-8", newline="\n")
    return paths


def to_arc_record(question: MultipleChoiceQuestion) -> dict:
    """The question back in the ARC layout (JSON-serialisable, so pipeline artifacts stay readable)."""
    return {
        "id": question.id,
        "question": {
            "stem": question.stem,
            "choices": [
                {"text": text, "label": label} for text, label in zip(question.choices, question.labels, strict=True)
            ],
        },
        "answerKey": question.labels[question.answer],
    }


def from_arc_records(records: Sequence[dict]) -> list[MultipleChoiceQuestion]:
    """Parse records in the ARC layout (e.g. a ``mc_test`` artifact); a bad one raises ``DataFormatError``."""
    questions = []
    for i, record in enumerate(records):
        try:
            questions.append(parse_arc_record(record, f"record-{i}"))
        except ValueError as error:
            raise DataFormatError(f"record {i}: {error}") from None
    return questions


def multiple_choice_files(params: MultipleChoiceDataParams) -> tuple[Path | None, Path]:
    """``(train file or None, test file)`` of a source; the demo writes its files first."""
    source = params.source
    if isinstance(source, DemoArc):
        return write_demo_arc(source.output_dir, source.num_questions, source.seed)
    return source.train, source.test


def fingerprint_multiple_choice(params: MultipleChoiceDataParams) -> dict[str, str]:
    """sha256 of every file the source reads, keyed by path."""
    return {str(p): sha256_file(p, "an ARC-format JSONL file") for p in multiple_choice_files(params) if p is not None}


def read_multiple_choice(
    params: MultipleChoiceDataParams,
) -> tuple[list[MultipleChoiceQuestion], list[MultipleChoiceQuestion]]:
    """``(train questions, test questions)``; train is empty when the source has no train file."""
    train, test = multiple_choice_files(params)
    limit = params.max_questions
    return ([] if train is None else load_arc_jsonl(train, limit)), load_arc_jsonl(test, limit)
