"""Prompt/response data for supervised fine-tuning: loaders, normalisation to chat turns, rendering, splits.

Three record layouts are read from JSON Lines files or JSON arrays (Alpaca ships one), or from hub datasets:

- ``{"prompt": ..., "response": ...}`` (``completion`` is accepted for ``response``, as TRL names it);
- Alpaca ``{"instruction": ..., "input": ..., "output": ...}`` (``input`` may be empty);
- self-instruct seed tasks ``{"instruction": ..., "instances": [{"input": ..., "output": ...}, ...]}`` (one example
  per instance);
- chat ``{"messages": [{"role": "user", "content": ...}, ..., {"role": "assistant", "content": ...}]}``.

Every record becomes a list of chat turns ending with the assistant's answer. Rendering turns an example into the
``prompt`` / ``completion`` pair the trainer sees: a text template with a ``{prompt}`` placeholder for single-turn
data, or the tokenizer's chat template. A malformed record raises ``DataFormatError`` with one line
``<path>:<line>: <what is wrong>``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from finetune.data.msmarco import require_file, sha256_file
from finetune.data.types import DataFormatError
from finetune.params import DemoInstructions, HubInstructions, InstructionDataParams, InstructionFile

ROLES = ("system", "user", "assistant")
EXAMPLE_COLUMNS = ["id", "prompt", "response", "messages"]


def _text(value: object) -> bool:
    return isinstance(value, str)


def normalize_record(record: object, where: str) -> list[dict[str, str]]:
    """Turn one record of any supported layout into chat turns ending with the assistant's answer.

    Args:
        record: The parsed JSON object.
        where: ``<path>:<line>`` for error messages.

    Raises:
        DataFormatError: Not an object, an unknown layout, a non-string field, an empty answer, or messages
            that do not end with an assistant turn.
    """
    if not isinstance(record, Mapping):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise DataFormatError(f"{where}: 'messages' must be a non-empty list")
        turns = []
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping) or m.get("role") not in ROLES or not _text(m.get("content")):
                raise DataFormatError(f"{where}: messages[{i}] needs a role in {list(ROLES)} and a string content")
            turns.append({"role": m["role"], "content": m["content"]})
        if turns[-1]["role"] != "assistant" or not turns[-1]["content"].strip():
            raise DataFormatError(f"{where}: the last message must be a non-empty assistant turn")
        if not any(t["role"] == "user" for t in turns):
            raise DataFormatError(f"{where}: messages have no user turn")
        return turns
    if "instruction" in record:
        fields = {k: record.get(k, "") for k in ("instruction", "input", "output")}
        bad = [k for k, v in fields.items() if not _text(v)]
        if bad:
            raise DataFormatError(f"{where}: Alpaca field '{bad[0]}' must be a string")
        if "output" not in record or not fields["output"].strip():
            raise DataFormatError(f"{where}: Alpaca record has no 'output'")
        prompt = fields["instruction"] + (f"\n\n{fields['input']}" if fields["input"].strip() else "")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": fields["output"]}]
    if "prompt" in record:
        answer_key = "response" if "response" in record else "completion"
        prompt, answer = record["prompt"], record.get(answer_key)
        if not _text(prompt) or not _text(answer):
            raise DataFormatError(f"{where}: 'prompt' and '{answer_key}' must both be strings")
        if not answer.strip():
            raise DataFormatError(f"{where}: empty '{answer_key}'")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    keys = sorted(record)[:5]
    raise DataFormatError(f"{where}: unknown record layout with keys {keys} (expected prompt/response, "
                          "instruction/input/output or messages)")


def _json_array_records(path: Path, text: str) -> Iterable[tuple[int, object]]:
    """Yield ``(line, element)`` for each element of a top-level JSON array, with the line it starts on."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text[pos:].startswith("["):
        raise DataFormatError(f"{path}:1: a .json file must hold a JSON array of records")
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise DataFormatError(f"{path}:{text.count(chr(10)) + 1}: unterminated JSON array")
        if text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        yield line, value


def read_instruction_file(path: str | Path) -> pd.DataFrame:
    """Read a JSON Lines file or a JSON array of prompt/response records.

    Returns:
        One row per example: ``id`` (``<stem>-<line>``), ``prompt`` (the last user turn), ``response`` (the final
        assistant turn) and ``messages`` (all turns as a JSON string).

    Raises:
        DataFormatError: ``<path>:<line>: ...`` for the first malformed record, an empty file, a directory or no
            such file.
    """
    path = require_file(path, "a JSONL or JSON file of prompt/response records")
    # Bytes decoded as a whole, not text mode, whose newline translation would end a line at a lone "\r".
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not valid UTF-8") from None
    if path.suffix == ".json":
        records = list(_json_array_records(path, text))
    else:
        records = []
        # JSON Lines ends records at "\n" only (a "\r" before it is JSON whitespace); str.splitlines would also
        # split inside strings at U+0085, U+2028 or U+2029, which JSON allows unescaped.
        for lineno, raw in enumerate(text.split("\n"), start=1):
            if not raw.strip():
                continue
            try:
                records.append((lineno, json.loads(raw)))
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
    if not records:
        raise DataFormatError(f"{path}:1: no records")
    return examples_frame((f"{path.stem}-{line}{suffix}", normalize_record(rec, f"{path}:{line}"))
                          for line, suffix, rec in _instances(path, records))


def _instances(path: Path, records: list[tuple[int, object]]) -> Iterable[tuple[int, str, object]]:
    """``(line, id suffix, record)``: a self-instruct seed task (``instruction`` + ``instances``) becomes one Alpaca
    record per instance (ids ``<stem>-<line>.<k>`` when it has several); other records pass through unchanged."""
    for line, record in records:
        if not (isinstance(record, dict) and "instruction" in record and "instances" in record):
            yield line, "", record
            continue
        instances = record["instances"]
        if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
            raise DataFormatError(f"{path}:{line}: 'instances' must be a non-empty list of {{input, output}} objects")
        for k, instance in enumerate(instances):
            alpaca = {"instruction": record["instruction"], "input": instance.get("input", ""),
                      "output": instance.get("output", "")}
            yield line, f".{k}" if len(instances) > 1 else "", alpaca


def examples_frame(examples: Iterable[tuple[str, list[dict[str, str]]]]) -> pd.DataFrame:
    """Build the example table from ``(id, turns)`` pairs."""
    rows = []
    for example_id, turns in examples:
        last_user = next(t["content"] for t in reversed(turns) if t["role"] == "user")
        rows.append({"id": example_id, "prompt": last_user, "response": turns[-1]["content"],
                     "messages": json.dumps(turns, ensure_ascii=False)})
    return pd.DataFrame(rows, columns=EXAMPLE_COLUMNS)


def load_hub_instructions(source: HubInstructions) -> pd.DataFrame:
    """Load a hub dataset at its pinned revision (through the local cache when offline)."""
    from datasets import load_dataset

    rows = load_dataset(source.dataset, source.config, split=source.split, revision=source.revision)
    where = f"{source.dataset}@{source.revision}[{source.split}]"
    return examples_frame((f"{source.split}-{i}", normalize_record(r, f"{where}:{i + 1}")) for i, r in enumerate(rows))


def instruction_files(params: InstructionDataParams) -> list[Path]:
    """The local files a source reads (written first for the demo), for fingerprinting."""
    source = params.source
    if isinstance(source, InstructionFile):
        return [source.path, *source.extra_paths]
    if isinstance(source, DemoInstructions):
        from finetune.data.demo_text import write_demo_instructions

        return [write_demo_instructions(source.output_dir, source.layout, source.num_examples, source.seed)]
    return []


def fingerprint_instructions(params: InstructionDataParams) -> dict[str, str]:
    """sha256 of every file the source reads; hub sources are keyed by their pinned revision."""
    source = params.source
    if isinstance(source, HubInstructions):
        return {f"hub:{source.dataset}/{source.config}/{source.split}": source.revision}
    expected = "a JSONL or JSON file of prompt/response records"
    return {str(p): sha256_file(p, expected) for p in instruction_files(params)}


def split_frame(frame: pd.DataFrame, validation_fraction: float, test_fraction: float, seed: int):
    """Seeded shuffle into train / validation / test; a non-zero fraction gets at least one row.

    Raises:
        ValueError: Too few rows to leave anything for training.
    """
    order = list(range(len(frame)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(order) * validation_fraction)) if validation_fraction else 0
    n_test = max(1, round(len(order) * test_fraction)) if test_fraction else 0
    if n_val + n_test >= len(order):
        raise ValueError(f"{len(order)} rows are too few for validation {n_val} + test {n_test} + some training")
    parts = order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]
    return tuple(frame.iloc[sorted(p)].reset_index(drop=True) for p in parts)


def load_instruction_data(params: InstructionDataParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read the source and split it into train / validation / test example tables (``EXAMPLE_COLUMNS``)."""
    source = params.source
    if isinstance(source, HubInstructions):
        frame = load_hub_instructions(source)
    else:
        frame = pd.concat([read_instruction_file(p) for p in instruction_files(params)], ignore_index=True)
    if params.max_examples is not None:
        frame = frame.iloc[: params.max_examples]
    return split_frame(frame, params.validation_fraction, params.test_fraction, params.split_seed)


def render_example(messages: list[dict[str, str]], template: str, tokenizer) -> tuple[str, str]:
    """Render one example as the ``(prompt, completion)`` strings the model is trained on.

    With a text template the prompt is ``template.format(prompt=<user turn>)`` and the completion is the answer
    followed by EOS, so the model learns to stop. With ``chat`` the tokenizer's chat template renders every turn
    before the answer plus the generation prompt, and the completion is the rest of the rendered conversation.

    Raises:
        ValueError: Multi-turn or system-prompted data with a text template, or no chat template on the tokenizer.
    """
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("template 'chat': this tokenizer has no chat template; use a text template")
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("template 'chat': the rendered prompt is not a prefix of the rendered conversation")
        completion = full[len(prompt):]
        # Templates that put a newline after the end-of-turn token (ChatML-style) would make TRL append a second
        # EOS after it; the answer ends at the EOS.
        if completion.rstrip().endswith(tokenizer.eos_token):
            completion = completion.rstrip()
        return prompt, completion
    if len(messages) != 2:
        raise ValueError(f"a text template renders one user turn and one answer; this example has {len(messages)} "
                         "turns (use template: chat)")
    return template.format(prompt=messages[0]["content"]), messages[1]["content"] + tokenizer.eos_token


def render_frame(frame: pd.DataFrame, template: str, tokenizer) -> pd.DataFrame:
    """Render every example: columns ``id``, ``prompt``, ``completion`` (for the trainer) and ``reference``
    (the bare answer, for ROUGE/BLEU against generations)."""
    pairs = [render_example(json.loads(m), template, tokenizer) for m in frame["messages"]]
    return pd.DataFrame({
        "id": frame["id"].tolist(),
        "prompt": [p for p, _ in pairs],
        "completion": [c for _, c in pairs],
        "reference": frame["response"].tolist(),
    })
