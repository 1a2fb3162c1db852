"""A tokenized split on disk: a ``datasets.Dataset`` written with ``save_to_disk`` and read back memory-mapped, with
the statistics people look at before training (rows, tokens, length histogram, truncation rate).

Tokenizing is the part of a training step that does not depend on the training parameters: the same data, tokenizer
and sequence length give the same token ids whatever the learning rate. A pipeline that tokenizes in a step of its
own caches it on exactly those inputs, and the training step reads the Arrow files memory-mapped (no copy in RAM,
no tokenizer run). ``finetune.generation.tokenization`` builds them for SFT and continued pre-training.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HISTOGRAM_BINS = 20
STATS_FILE = "tokenized_stats.json"


@dataclass
class TokenizedDataset:
    """One tokenized split in a ``save_to_disk`` folder.

    Attributes:
        path: The folder (``dataset_info.json``, ``state.json``, ``data-*.arrow``).
        stats: What :func:`split_stats` computed: ``kind``, ``split``, ``tokenizer``, ``tokenizer_fingerprint``,
            ``max_length``, ``examples`` (rows in), ``rows`` (sequences out), ``tokens``, ``loss_tokens``,
            ``truncated``, ``truncation_rate``, ``lengths`` (``token_length_stats``), ``histogram`` and the task's
            own keys (``completion_only`` and ``template`` for SFT, ``block_size`` for packed text).
    """

    path: Path
    stats: dict

    def load(self):
        """The ``datasets.Dataset``, memory-mapped from the Arrow files (nothing is read into RAM up front)."""
        from datasets import load_from_disk

        return load_from_disk(str(self.path))

    @property
    def rows(self) -> int:
        return int(self.stats["rows"])

    def fingerprint(self) -> str:
        """sha256 of the Arrow data files' bytes (sorted by name) and the statistics: the same token ids give the
        same fingerprint whichever run wrote them (``state.json`` holds a random id, so it is left out)."""
        digest = hashlib.sha256(json.dumps(self.stats, sort_keys=True).encode())
        for file in sorted(Path(self.path).glob("*.arrow")):
            digest.update(file.name.encode() + b"\0")
            with open(file, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()


def write_tokenized(dataset, stats: dict, directory: str | Path) -> TokenizedDataset:
    """Save ``dataset`` with ``save_to_disk`` (and ``stats`` beside it) and return it as a :class:`TokenizedDataset`
    whose ``load`` memory-maps the files just written."""
    path = Path(directory)
    dataset.save_to_disk(str(path))
    (path / STATS_FILE).write_text(json.dumps(stats, indent=1))
    return TokenizedDataset(path, stats)


def read_tokenized(directory: str | Path) -> TokenizedDataset:
    """A folder written by :func:`write_tokenized`."""
    path = Path(directory)
    return TokenizedDataset(path, json.loads((path / STATS_FILE).read_text()))


def token_length_stats(lengths: Sequence[int], max_length: int) -> dict[str, float]:
    """Token lengths: count, mean, median, p95, max and the fraction longer than ``max_length``."""
    if not lengths:
        return {"count": 0}
    ordered = sorted(lengths)
    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 2),
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        "max": ordered[-1],
        "truncated_fraction": round(sum(n > max_length for n in ordered) / len(ordered), 4),
    }


def length_histogram(lengths: Sequence[int], bins: int = HISTOGRAM_BINS) -> list[dict[str, int]]:
    """Counts of ``lengths`` in ``bins`` equal-width integer bins from 0 to the longest (``[low, high)``, the last
    bin closed): ``[{"low": 0, "high": 13, "count": 40}, ...]``; empty for no lengths."""
    if not lengths:
        return []
    width = max(1, math.ceil((max(lengths) + 1) / bins))
    counts = [0] * math.ceil((max(lengths) + 1) / width)
    for n in lengths:
        counts[n // width] += 1
    return [{"low": i * width, "high": (i + 1) * width, "count": c} for i, c in enumerate(counts)]


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of a tokenizer's token → id map and its EOS/BOS tokens: training refuses data tokenized by another."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    digest = hashlib.sha256(json.dumps([vocab, tokenizer.eos_token, tokenizer.bos_token]).encode())
    return digest.hexdigest()


def split_stats(kind: str, split: str, tokenizer, tokenizer_name: str, max_length: int, lengths: Sequence[int],
                rows: int, tokens: int, loss_tokens: int, truncated: int, truncation_rate: float, **extra) -> dict:
    """The statistics of one tokenized split (see :class:`TokenizedDataset`).

    Args:
        kind: ``sft`` or ``causal_lm``: which training reads it.
        split: ``train`` or ``validation``.
        tokenizer: The tokenizer used (fingerprinted).
        tokenizer_name: Where it came from (one line).
        max_length: Tokens per sequence at most (SFT's ``training.max_length``; the block length of packed text).
        lengths: Token count of every input example before truncation or packing.
        rows: Sequences in the dataset.
        tokens: Tokens in the dataset.
        loss_tokens: Tokens that carry loss (``throughput.loss_tokens``).
        truncated: Examples cut (SFT) or tokens dropped (packed text's remainder).
        truncation_rate: ``truncated`` as a fraction of examples (SFT) or of tokens (packed text).
        extra: The task's own keys.
    """
    return {"kind": kind, "split": split, "tokenizer": tokenizer_name,
            "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer), "max_length": max_length,
            "examples": len(lengths), "rows": rows, "tokens": tokens, "loss_tokens": loss_tokens,
            "truncated": truncated, "truncation_rate": round(truncation_rate, 4),
            "lengths": token_length_stats(lengths, max_length), "histogram": length_histogram(lengths), **extra}


def check_tokenized_for(tokenized: TokenizedDataset, kind: str, tokenizer, **expected) -> None:
    """Refuse a tokenized split made for another training: another kind, tokenizer or settings.

    Args:
        tokenized: The split.
        kind: The training that reads it (``sft``, ``causal_lm``).
        tokenizer: The training model's tokenizer.
        expected: Statistics keys and the values this training needs (``max_length=128``, ...).

    Raises:
        ValueError: One line naming the split, the key and both values.
    """
    stats = tokenized.stats
    split = stats.get("split", "?")
    if stats.get("kind") != kind:
        raise ValueError(f"tokenized {split}: made for {stats.get('kind')} training, not {kind}")
    for key, value in expected.items():
        if stats.get(key) != value:
            raise ValueError(f"tokenized {split}: tokenized with {key} {stats.get(key)!r}, but this training uses "
                             f"{value!r}; tokenize again with the training's settings")
    if stats.get("tokenizer_fingerprint") != tokenizer_fingerprint(tokenizer):
        raise ValueError(f"tokenized {split}: tokenized with another tokenizer ({stats.get('tokenizer')}) than the "
                         "model being trained")
