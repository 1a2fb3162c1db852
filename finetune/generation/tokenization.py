"""Tokenizing the training data of causal LMs, once, apart from training: SFT examples (rendered with the template,
tokenized as TRL's ``SFTTrainer`` would) and documents packed into blocks for continued pre-training and LM
distillation.

The ``*_split`` functions return an in-memory ``datasets.Dataset`` and its statistics (``sft_setup`` and
``causal_lm_setup`` call them when handed tables); :func:`tokenize_instructions` and :func:`tokenize_documents`
load the tokenizer from a model directory and write each split to disk as a
:class:`~finetune.data.tokenized.TokenizedDataset`, which is what the pipelines' tokenize steps return and their
training steps read, memory-mapped. Both paths run the same code, so they give the same token ids.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from finetune.data.instructions import render_frame
from finetune.data.tokenized import TokenizedDataset, split_stats, write_tokenized
from finetune.generation.throughput import check_completions_left, tokenize_examples
from finetune.params import InstructionTokenization, TextTokenization

ENCODE_BATCH = 1000  # documents per tokenizer call: a fast tokenizer encodes a batch in one call into Rust


def _features():
    from datasets import Features, Sequence, Value

    return Features({"input_ids": Sequence(Value("int64")), "labels": Sequence(Value("int64"))})


def instruction_split(tokenizer, tokenizer_name: str, frame: pd.DataFrame, split: str,
                      params: InstructionTokenization) -> tuple[object, dict]:
    """Render and tokenize one split of examples (``finetune.data.instructions.EXAMPLE_COLUMNS``) for SFT.

    Sequences keep their first ``max_length`` tokens; examples whose prompt fills them are dropped
    (``check_completions_left``, which fails when none is left).

    Returns:
        ``(dataset, stats)``: ``input_ids`` and ``labels`` columns, and ``split_stats`` with ``completion_only``,
        ``template`` and ``dropped_no_completion``.
    """
    from datasets import Dataset

    rendered = render_frame(frame, params.template, tokenizer) if not frame.empty else {"prompt": [],
                                                                                      "completion": []}
    tokenized = tokenize_examples(tokenizer, rendered["prompt"], rendered["completion"], params.max_length,
                                  params.completion_only)
    dropped = check_completions_left(split, tokenized, params.max_length)
    columns = tokenized.columns
    truncated = sum(n > params.max_length for n in tokenized.lengths)
    stats = split_stats(
        "sft", split, tokenizer, tokenizer_name, params.max_length, tokenized.lengths, len(columns["input_ids"]),
        sum(map(len, columns["input_ids"])), sum(sum(x != -100 for x in labels[1:]) for labels in columns["labels"]),
        truncated, truncated / len(tokenized.lengths) if tokenized.lengths else 0.0,
        completion_only=params.completion_only, template=params.template, dropped_no_completion=dropped)
    return Dataset.from_dict(columns, features=_features()), stats


def group_texts(token_ids: list[list[int]], block_size: int, eos_token_id: int) -> list[list[int]]:
    """Concatenate documents (each followed by EOS) and cut the stream into full ``block_size`` blocks.

    The remainder shorter than a block is dropped, as in transformers' ``run_clm`` example.
    """
    stream = [t for ids in token_ids for t in (*ids, eos_token_id)]
    usable = len(stream) // block_size * block_size
    return [stream[i : i + block_size] for i in range(0, usable, block_size)]


def effective_block_size(config, block_size: int) -> int:
    """``block_size`` capped at the model's ``max_position_embeddings``."""
    return min(block_size, getattr(config, "max_position_embeddings", block_size) or block_size)


def document_split(tokenizer, tokenizer_name: str, frame: pd.DataFrame, split: str, block_size: int,
                   requested_block_size: int | None = None) -> tuple[object, dict]:
    """Tokenize documents (``text`` column, no special tokens), join them with EOS and cut full blocks.

    Labels are a plain copy of the input ids: full blocks need no padding (a pad-masking collator would also mask
    GPT-2's EOS, which doubles as its pad token).

    Args:
        block_size: Tokens per block (already capped at the model's positions, ``effective_block_size``).
        requested_block_size: The configured ``block_size``, recorded for the consistency check (default: same).

    Returns:
        ``(dataset, stats)``; ``truncated`` counts the stream's tokens in the dropped last partial block and
        ``truncation_rate`` their fraction of the stream (documents longer than a block are split, not cut:
        ``lengths.truncated_fraction`` counts those).

    Raises:
        ValueError: A non-empty split holds fewer tokens than one block.
    """
    from datasets import Dataset

    texts = frame["text"].tolist() if not frame.empty else []
    ids = [x for i in range(0, len(texts), ENCODE_BATCH)
           for x in tokenizer(texts[i : i + ENCODE_BATCH], add_special_tokens=False)["input_ids"]]
    blocks = group_texts(ids, block_size, tokenizer.eos_token_id)
    if texts and not blocks:
        raise ValueError(f"{split} text has fewer tokens than one block of {block_size}")
    stream = sum(map(len, ids)) + len(ids)
    dropped = stream - len(blocks) * block_size
    stats = split_stats("causal_lm", split, tokenizer, tokenizer_name, block_size, [len(x) for x in ids],
                        len(blocks), len(blocks) * block_size, len(blocks) * (block_size - 1), dropped,
                        dropped / stream if stream else 0.0, block_size=requested_block_size or block_size)
    return Dataset.from_dict({"input_ids": blocks, "labels": blocks}, features=_features()), stats


def _tokenizer(model_dir: str | Path):
    from finetune.models.causal import load_causal_tokenizer, resolve_causal_model
    from finetune.params import LocalModel

    resolved = resolve_causal_model(LocalModel(path=Path(model_dir)), Path(model_dir))
    return resolved, load_causal_tokenizer(resolved)


def tokenize_instructions(model_dir: str | Path, splits: dict[str, pd.DataFrame], params: InstructionTokenization,
                          out_dir: str | Path, model_name: str = "") -> dict[str, TokenizedDataset]:
    """Tokenize each split of examples with the tokenizer in ``model_dir`` into ``<out_dir>/<split>``.

    ``max_length`` is checked against the model's positions first, so a setting the model cannot train on fails
    here rather than after tokenizing. ``model_name`` names the tokenizer in the statistics (default: the path).
    """
    from transformers import AutoConfig

    from finetune.models.sources import check_max_length

    resolved, tokenizer = _tokenizer(model_dir)
    check_max_length(AutoConfig.from_pretrained(resolved.name_or_path, **resolved.tokenizer_kwargs()),
                     params.max_length, "training.max_length", resolved.name_or_path)
    return {name: write_tokenized(*instruction_split(tokenizer, model_name or str(model_dir), frame, name, params),
                                  Path(out_dir) / name) for name, frame in splits.items()}


def tokenize_documents(model_dir: str | Path, splits: dict[str, pd.DataFrame], params: TextTokenization,
                       out_dir: str | Path, model_name: str = "") -> dict[str, TokenizedDataset]:
    """Tokenize and pack each split of documents with the tokenizer in ``model_dir`` into ``<out_dir>/<split>``;
    blocks are ``block_size`` tokens capped at the model's positions, as ``causal_lm_setup`` caps them."""
    from transformers import AutoConfig

    resolved, tokenizer = _tokenizer(model_dir)
    config = AutoConfig.from_pretrained(resolved.name_or_path, **resolved.tokenizer_kwargs())
    block = effective_block_size(config, params.block_size)
    return {name: write_tokenized(*document_split(tokenizer, model_name or str(model_dir), frame, name, block,
                                                  params.block_size), Path(out_dir) / name)
            for name, frame in splits.items()}
