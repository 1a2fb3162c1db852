"""Training throughput: how SFT batches are built, which tokens count, and model FLOPs utilisation.

Batching. TRL's ``SFTTrainer`` draws random batches and pads each to its longest example. Instruction data is
long-tailed (on the Alpaca subset in ``../shared/evaldata`` a random batch of 8 is ~2.5× its real tokens once
padded), so most of the compute goes to padding. Two remedies, both from the libraries:

- length-grouped batches (transformers' ``LengthGroupedSampler``): the epoch is shuffled, cut into mega-batches
  (up to 50 batches, at least 4 mega-batches per epoch) and each mega-batch is sorted by length before it is cut into
  batches, so a batch's examples have similar lengths and padding drops to ~10 %. Every example is still seen
  once per epoch, and the batch holding the longest example comes first (an out-of-memory error shows at step 1).
- padding-free batches (TRL's ``padding_free``): a batch is one row of concatenated examples whose position ids
  restart at 0 for every example; attention stays within each example. No padding at all, but with SDPA the mask is
  a dense block-diagonal matrix over the whole row, so on CPU the attention cost grows with the square of the
  batch's total length: it pays off with FlashAttention (``attn_implementation="flash_attention_2"`` on a GPU),
  which attends per example.

Tokens. A training token is one whose label is not ``-100``: the completion tokens with completion-only loss,
every token but the first of each example otherwise (``loss_tokens``). Padding and prompt tokens are not counted,
so rates of padded and padding-free runs compare.

MFU. Model FLOPs utilisation is ``tokens/s × 6 × parameters ÷ peak FLOP/s`` (a forward and backward pass costs
about 6 FLOPs per parameter per token: 2 forward, 4 backward; attention's own FLOPs are left out, as in the PaLM
paper's simple form). Peaks are the dense bf16 tensor-core figures of NVIDIA's datasheets (``PEAK_BF16_TFLOPS``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Dense (not 2:4 sparse) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's datasheets. Keys are matched against
# the words of torch.cuda.get_device_name(), case-insensitively, longest key first ("H100 PCIe" before "H100").
PEAK_BF16_TFLOPS: dict[str, float] = {
    "B200": 2250.0,
    "GH200": 989.4,
    "H200": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.4,  # SXM ("NVIDIA H100 80GB HBM3")
    "H800": 989.4,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.1,
    "L40": 181.0,
    "L4": 121.0,
    "A6000": 154.8,  # RTX A6000
    "A10": 125.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}

def batching_options(params) -> dict:
    """``SFTConfig`` keywords for how training batches are built, from ``SftParams``.

    ``group_by_length`` maps onto ``train_sampling_strategy="group_by_length"`` (else ``"random"``, TRL's default)
    and ``padding_free`` onto TRL's option of the same name.
    """
    return {"train_sampling_strategy": "group_by_length" if params.group_by_length else "random",
            "padding_free": params.padding_free}


@dataclass
class TokenizedExamples:
    """Prompt/completion pairs tokenized once, as ``SFTTrainer`` would, ready for it to train on.

    Attributes:
        columns: ``input_ids`` and ``labels`` (``-100`` on the prompt with completion-only loss), truncated to
            ``max_length``; examples left with no label are dropped, as TRL drops them.
        lengths: Token count of every example before truncation (for the length statistics).
    """

    columns: dict[str, list[list[int]]]
    lengths: list[int]


def tokenize_examples(tokenizer, prompts: Iterable[str], completions: Iterable[str], max_length: int | None,
                      completion_only: bool) -> TokenizedExamples:
    """Tokenize prompt/completion pairs the way TRL's ``SFTTrainer`` does, once, before the trainer exists.

    As in TRL: EOS is appended to a completion that does not end with it, ``prompt + completion`` is tokenized
    with the tokenizer's special tokens, and the completion starts where the tokenized prompt stops being a prefix
    of the whole; sequences keep their first ``max_length`` tokens. ``SFTTrainer`` then skips its own preparation
    (the dataset has ``input_ids``), which is also what lets padding-free batches keep sequences within
    ``max_length``: TRL refuses to truncate when ``padding_free`` is on without packing.
    """
    from trl.data_utils import common_prefix_length

    eos = tokenizer.eos_token
    columns: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    lengths = []
    for prompt, completion in zip(prompts, completions, strict=True):
        if not completion.endswith(eos):
            completion += eos
        ids = tokenizer(prompt + completion)["input_ids"]
        lengths.append(len(ids))
        start = common_prefix_length(tokenizer(prompt)["input_ids"], ids) if completion_only else 0
        labels = [-100] * start + ids[start:]
        if max_length is not None:
            ids, labels = ids[:max_length], labels[:max_length]
        if any(label != -100 for label in labels):  # TRL drops the same examples
            columns["input_ids"].append(ids)
            columns["labels"].append(labels)
    return TokenizedExamples(columns, lengths)


def check_completions_left(split: str, tokenized: TokenizedExamples, max_length: int | None) -> int:
    """Report examples dropped because their prompt alone fills ``max_length`` (no completion token left).

    A few such examples are dropped with a warning; when none is left TRL would stop on a bare ``StopIteration``
    from an empty dataset, so this fails first with one line.

    Args:
        split: ``"train"`` or ``"validation"``, for the message.
        tokenized: What :func:`tokenize_examples` returned for the split.
        max_length: ``training.max_length``.

    Returns:
        How many examples were dropped.

    Raises:
        ValueError: Every example was dropped.
    """
    total, kept = len(tokenized.lengths), len(tokenized.columns["input_ids"])
    dropped = total - kept
    if dropped and not kept:
        raise ValueError(f"{split}: all {total} examples have prompts of at least training.max_length ({max_length}) "
                         f"tokens, leaving no completion token to train on; raise training.max_length or shorten "
                         f"the prompts")
    if dropped:
        logging.getLogger(__name__).warning(
            "%s: dropped %d of %d examples whose prompt fills training.max_length (%s) tokens (no completion token "
            "left to train on)", split, dropped, total, max_length)
    return dropped


def loss_tokens(rows: Iterable[Mapping]) -> int:
    """Tokens that carry loss in a dataset prepared for ``SFTTrainer`` (``input_ids`` and ``labels``).

    A token carries loss when its label is not ``-100`` and it is not the first of its example (nothing predicts
    the first token: padded batches shift it out, padding-free batches mask it).
    """
    return sum(sum(label != -100 for label in row["labels"][1:]) for row in rows)


def training_flops_per_token(parameters: int) -> float:
    """Forward plus backward FLOPs per token of a dense transformer: 6 × parameters (2 forward, 4 backward)."""
    return 6.0 * parameters


def model_flops_utilisation(tokens_per_second: float, parameters: int, peak_tflops: float) -> float:
    """Fraction of the device's peak spent on the model's FLOPs: ``tokens/s × 6 × parameters ÷ (peak × 1e12)``."""
    if peak_tflops <= 0:
        raise ValueError(f"peak_tflops must be positive, got {peak_tflops}")
    return tokens_per_second * training_flops_per_token(parameters) / (peak_tflops * 1e12)


def peak_bf16_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU from its name (``torch.cuda.get_device_name()``), or None when unknown."""
    words = f" {' '.join(re.findall(r'[a-z0-9]+', device_name.lower()))} "
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if f" {key.lower()} " in words:  # whole words: "A10" must not match an "A10G" or an "A100"
            return PEAK_BF16_TFLOPS[key]
    return None
