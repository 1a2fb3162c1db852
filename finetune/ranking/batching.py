"""Batches of similar token length: sorted batches for scoring, length-grouped random batches for training.

A batch is padded to its longest sequence, so mixing a 40-token pair with a 256-token one computes 216 padding
positions for nothing. TREC DL 2019's BM25 top-100 pairs (query + passage, all-MiniLM-L6-v2's tokenizer,
max_length 256) have 34 to 256 tokens, 102 on average (first 5 queries). On 50 mined training pairs, random
batches of 16 computed 45 % padding positions and length-grouped ones 25 % (bench/perf_cross_encoder_training.py;
more rows per mega-batch pad less).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

LABEL_COLUMNS = ("label", "labels")


def pair_token_lengths(tokenizer, queries: Sequence[str], docs: Sequence[str], max_length: int) -> np.ndarray:
    """Token count of each (query, doc) pair as the model sees it (special tokens included, truncated)."""
    if not queries:
        return np.zeros(0, dtype=np.int64)
    encoded = tokenizer(list(queries), list(docs), truncation="longest_first", max_length=max_length)
    return np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)


def row_token_lengths(dataset, tokenizer, max_length: int) -> np.ndarray:
    """Longest (query, document) pair of each training row, in tokens.

    Handles the layouts of ``to_loss_dataset``: (query, passage, label), (query, docs, labels) and
    (query, positive, negative_1, ...). The first text column is the query; every other text column holds a
    document or a list of documents. A single text column (text, label), as a bi-encoder learning a teacher's
    embeddings trains on, gives each text's own length.
    """
    columns = [c for c in dataset.column_names if c not in LABEL_COLUMNS]
    queries = dataset[columns[0]]
    if len(columns) == 1:
        encoded = tokenizer(list(queries), truncation=True, max_length=max_length)
        return np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
    rows, pair_queries, pair_docs = [], [], []
    for column in columns[1:]:
        for row, value in enumerate(dataset[column]):
            for doc in value if isinstance(value, list) else [value]:
                rows.append(row)
                pair_queries.append(queries[row])
                pair_docs.append(doc)
    lengths = np.zeros(len(dataset), dtype=np.int64)
    np.maximum.at(lengths, np.array(rows, dtype=np.int64), pair_token_lengths(tokenizer, pair_queries, pair_docs,
                                                                              max_length))
    return lengths


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices in batches of ``batch_size``, longest first (ties keep input order), for scoring."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """Random batches of similar length, for sentence-transformers trainers (``batch_sampler=`` argument).

    Each epoch shuffles the rows with a generator seeded by ``seed + epoch``, cuts the permutation into
    mega-batches of ``mega_batches`` batches, sorts each mega-batch by length (longest first), splits it into
    batches and shuffles the order of all batches. Every row is seen once per epoch, as with the default
    sampler, and batches stay random in content up to their length band (transformers' ``group_by_length``
    works the same way).

    Args:
        dataset: The training dataset (only its length is used).
        batch_size: Rows per batch.
        drop_last: Drop the last incomplete batch of the epoch.
        lengths: Token length of every row (:func:`row_token_lengths`).
        mega_batches: Batches per sorted group; larger groups pad less and randomise less.
        valid_label_columns: Passed by the trainer; unused.
        generator: Passed by the trainer; unused (the order depends on ``seed`` and the epoch only).
        seed: Seed of the shuffles.
    """

    def __init__(self, dataset, batch_size: int, drop_last: bool, lengths: Sequence[int], mega_batches: int = 50,
                 valid_label_columns: list[str] | None = None, generator: torch.Generator | None = None,
                 seed: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        if len(lengths) != len(dataset):
            raise ValueError(f"length-grouped batches: {len(lengths)} lengths for {len(dataset)} rows")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.mega_batches = mega_batches

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        permutation = rng.permutation(len(self.lengths))
        mega = self.batch_size * self.mega_batches
        batches: list[list[int]] = []
        for start in range(0, len(permutation), mega):
            group = permutation[start : start + mega]
            group = group[np.argsort(-self.lengths[group], kind="stable")]
            batches.extend(group[i : i + self.batch_size].tolist() for i in range(0, len(group), self.batch_size))
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
