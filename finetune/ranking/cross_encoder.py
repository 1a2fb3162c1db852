"""MonoBERT-style cross-encoder: hard-negative mining, training with sentence-transformers, reranking.

The training loop is sentence-transformers' ``CrossEncoderTrainer`` (a transformers Trainer); this module only
turns ranking data into its input formats, picks the loss and maps our parameters onto its arguments.
"""

from __future__ import annotations

import functools
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from finetune.data.types import RankingSet, Run
from finetune.device import InferencePrecision, Placement, resolve_placement
from finetune.models.sources import (
    check_max_length,
    count_parameters,
    resolve_model,
    sentence_transformers_kwargs,
)
from finetune.params import CrossEncoderParams, MiningParams, TrainingParams
from finetune.training import (
    CheckpointPlan,
    checkpoint_plan,
    common_training_arguments,
    seed_before_building,
    train_and_save,
)

if TYPE_CHECKING:
    from finetune.curriculum import QueryCurriculum

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ["group", "qid", "query", "pid", "passage", "grade", "role"]


def top_candidates(run: Run, qid: str, depth: int) -> list[str]:
    """The first ``depth`` pids of a query's ranking (descending score, ties by pid for determinism)."""
    scores = run.get(qid, {})
    return [pid for pid, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]]


def mine_hard_negatives(data: RankingSet, first_stage: Run, params: MiningParams) -> pd.DataFrame:
    """Build training groups: each positive passage with hard negatives from the query's first-stage ranking.

    Positives are passages graded ``>= positive_min_grade`` (highest grade first, at most
    ``max_positives_per_query``). Negatives come from ranks ``skip_top+1 .. depth`` of the first stage and are
    judged at most ``params.negative_grade_limit`` or unjudged; when a query has too few, random corpus passages
    fill up. A per-query RNG seeded by ``(seed, qid)`` makes the result independent of query order.

    Returns:
        Long-format rows ``group, qid, query, pid, passage, grade, role`` (role ``positive``/``negative``; one
        positive per group, then its negatives).
    """
    rows: list[dict] = []
    all_pids = sorted(data.corpus)
    group = 0
    for qid in sorted(data.queries):
        judged = data.qrels.get(qid, {})
        positives = sorted(
            (pid for pid, g in judged.items() if g >= params.positive_min_grade and pid in data.corpus),
            key=lambda pid: (-judged[pid], pid),
        )[: params.max_positives_per_query]
        if not positives:
            continue
        rng = random.Random(f"{params.seed}:{qid}")
        ranked = top_candidates(first_stage, qid, params.depth)[params.skip_top :]
        limit = params.negative_grade_limit
        pool = [pid for pid in ranked if judged.get(pid, 0) <= limit]
        for pos in positives:
            negatives = rng.sample(pool, min(len(pool), params.negatives_per_positive))
            while len(negatives) < params.negatives_per_positive and len(all_pids) > len(judged) + len(negatives):
                pid = rng.choice(all_pids)
                if judged.get(pid, 0) <= limit and pid not in negatives:
                    negatives.append(pid)
            query = data.queries[qid]
            rows.append(dict(group=group, qid=qid, query=query, pid=pos, passage=data.corpus[pos],
                             grade=judged[pos], role="positive"))
            rows.extend(
                dict(group=group, qid=qid, query=query, pid=pid, passage=data.corpus[pid],
                     grade=judged.get(pid, 0), role="negative")
                for pid in negatives
            )
            group += 1
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def candidate_groups(data: RankingSet, first_stage: Run, depth: int, first_group: int = 0) -> pd.DataFrame:
    """One group per query without judgments: its first-stage top ``depth`` passages, for a teacher to score.

    Rows have the :data:`PAIR_COLUMNS` of :func:`mine_hard_negatives` with ``role`` ``candidate`` and ``grade`` 0
    (unjudged), in first-stage order; groups are numbered from ``first_group`` so they can follow mined groups.
    Queries with fewer than 2 candidates are left out (a ranking needs two passages to compare).
    """
    rows: list[dict] = []
    group = first_group
    for qid in sorted(data.queries):
        pids = [pid for pid in top_candidates(first_stage, qid, depth) if pid in data.corpus]
        if len(pids) < 2:
            continue
        rows.extend(dict(group=group, qid=qid, query=data.queries[qid], pid=pid, passage=data.corpus[pid], grade=0,
                         role="candidate") for pid in pids)
        group += 1
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def to_loss_dataset(pairs: pd.DataFrame, loss: str):
    """Convert mined groups into the column layout each sentence-transformers loss expects.

    - ``bce``: (query, passage) → label 1.0 for the positive, 0.0 for negatives.
    - ``ranknet`` / ``lambda`` / ``listnet``: (query, [docs]) → [graded labels]: the judged grade of every
      document (unjudged = 0), so a partially relevant negative still ranks above an irrelevant one.
    - ``mnrl``: (query, positive, negative_1..negative_n); groups with fewer than n negatives are dropped.
    """
    from datasets import Dataset

    if pairs.empty:
        raise ValueError("no training pairs: no training query has a judged positive passage in the collection")
    if loss == "bce":
        return Dataset.from_dict({
            "query": pairs["query"].tolist(),
            "passage": pairs["passage"].tolist(),
            "label": (pairs["role"] == "positive").astype(float).tolist(),
        })
    groups = [g for _, g in pairs.groupby("group", sort=True)]
    if loss in ("ranknet", "lambda", "listnet"):
        return Dataset.from_dict({
            "query": [g["query"].iloc[0] for g in groups],
            "docs": [g["passage"].tolist() for g in groups],
            "labels": [g["grade"].astype(float).tolist() for g in groups],
        })
    if loss == "mnrl":
        n = max(len(g) - 1 for g in groups)
        full = [g for g in groups if len(g) - 1 == n]
        if len(full) < len(groups):
            logger.warning("mnrl: dropped %d groups with fewer than %d negatives", len(groups) - len(full), n)
        columns = {"query": [g["query"].iloc[0] for g in full], "positive": [g["passage"].iloc[0] for g in full]}
        for i in range(n):
            columns[f"negative_{i + 1}"] = [g["passage"].iloc[i + 1] for g in full]
        return Dataset.from_dict(columns)
    raise ValueError(f"unknown loss '{loss}'")


def instance_qids(pairs: pd.DataFrame, loss: str) -> list[str]:
    """The query of each row of ``to_loss_dataset(pairs, loss)``, in the same order (for curricula)."""
    if loss == "bce":
        return pairs["qid"].tolist()
    groups = [g for _, g in pairs.groupby("group", sort=True)]
    if loss == "mnrl":
        n = max(len(g) - 1 for g in groups)
        groups = [g for g in groups if len(g) - 1 == n]
    return [g["qid"].iloc[0] for g in groups]


def build_loss(model, loss: str, pairs: pd.DataFrame):
    """The sentence-transformers loss object for ``loss``.

    BCE weights positives by the negative:positive ratio (4 negatives per positive → ``pos_weight=4``), as the
    sentence-transformers MS MARCO recipe does, so the classifier is not pushed to predict "irrelevant" always.
    """
    import torch
    from sentence_transformers.cross_encoder import losses

    if loss == "bce":
        n_pos = int((pairs["role"] == "positive").sum())
        ratio = (len(pairs) - n_pos) / max(n_pos, 1)
        return losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(max(ratio, 1.0)))
    if loss == "ranknet":
        return losses.RankNetLoss(model)
    if loss == "lambda":
        return losses.LambdaLoss(model)
    if loss == "listnet":
        return losses.ListNetLoss(model)
    if loss == "mnrl":
        return losses.MultipleNegativesRankingLoss(model)
    raise ValueError(f"unknown loss '{loss}'")


def to_training_arguments(params: TrainingParams, output_dir: str | Path, placement: Placement,
                          checkpoints: CheckpointPlan | None = None, batch_sampler: Callable | None = None):
    """Map our training parameters onto ``CrossEncoderTrainingArguments`` (the one place this happens).

    ``batch_sampler`` is a batch-sampler factory for the training set (:func:`length_grouped_sampler`); None keeps
    sentence-transformers' default random batches.
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    extra = {} if batch_sampler is None else {"batch_sampler": batch_sampler}
    return CrossEncoderTrainingArguments(
        **{**common_training_arguments(params, output_dir, placement), **(checkpoints or CheckpointPlan()).arguments()},
        **extra,
    )


def length_grouped_sampler(dataset, tokenizer, params: TrainingParams) -> Callable:
    """A ``batch_sampler`` factory batching training rows of similar token length (lengths measured once, here).

    See :class:`finetune.ranking.batching.LengthGroupedBatchSampler`.
    """
    from finetune.ranking.batching import LengthGroupedBatchSampler, row_token_lengths

    lengths = row_token_lengths(dataset, tokenizer, params.max_length)
    return functools.partial(LengthGroupedBatchSampler, lengths=lengths)


@dataclass
class TrainResult:
    """What training produced.

    Attributes:
        model_dir: Saved CrossEncoder (safetensors + tokenizer + sentence-transformers config).
        log_history: Trainer log entries with ``step`` and ``loss`` (and ``grad_norm``, ``learning_rate``).
        num_parameters: Parameter count of the trained model.
        train_seconds: Wall time of ``trainer.train()``.
        resumed_from_step: The checkpoint step this run resumed from (0: trained from the start).
        train_examples: Rows the loss saw per epoch.
        base_model: One-line description of where the starting weights came from.
        device: Resolved device and precision.
        data_fraction: With a curriculum, the fraction of the training rows available at each optimizer step.
    """

    model_dir: Path
    log_history: list[dict] = field(default_factory=list)
    num_parameters: int = 0
    train_seconds: float = 0.0
    train_examples: int = 0
    base_model: str = ""
    device: str = ""
    data_fraction: list[float] = field(default_factory=list)
    resumed_from_step: int = 0


def train_cross_encoder(
    pairs: pd.DataFrame, params: CrossEncoderParams, output_dir: str | Path, curriculum: QueryCurriculum | None = None
) -> TrainResult:
    """Train a cross-encoder on mined groups and save it to ``<output_dir>/model``.

    The tiny_bert source trains its tokenizer on the training queries and passages. With ``curriculum`` the
    trainer draws each batch from the easiest queries' rows as its pacing function allows
    (:mod:`finetune.curriculum`); the number of optimizer steps is unchanged. Without one, batches are
    length-grouped (``params.length_grouped_batches``) so each pads to little more than its own rows. On a CPU
    other than Intel's, in fp32, the linear layers compute through oneDNN (:mod:`finetune.ranking.onednn`). A
    run killed after a checkpoint (``params.training.checkpoints``) resumes from it when started again with the same
    pairs and parameters.
    """
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer

    from finetune.curriculum import with_curriculum
    from finetune.ranking.onednn import onednn_for_training, onednn_linears

    out = Path(output_dir)
    placement = resolve_placement(params.training.device, params.training.precision)
    texts = pairs["query"].drop_duplicates().tolist() + pairs["passage"].drop_duplicates().tolist()
    resolved = resolve_model(params.model, out / "base", texts=texts)
    seed_before_building(params.training.seed)
    model = CrossEncoder(
        resolved.name_or_path,
        **resolved.sentence_transformers_kwargs(),
        num_labels=1,
        max_length=params.training.max_length,
        device=placement.device,
    )
    check_max_length(model.model.config, params.training.max_length, "training.max_length", resolved.name_or_path)
    dataset = to_loss_dataset(pairs, params.loss)
    extra = {} if curriculum is None else {"curriculum": curriculum.for_rows(instance_qids(pairs, params.loss))}
    plan = checkpoint_plan("cross_encoder", params.training.checkpoints, params, pairs, curriculum)
    grouped = params.length_grouped_batches and curriculum is None  # a curriculum decides the order itself
    sampler = length_grouped_sampler(dataset, model.tokenizer, params.training) if grouped else None
    trainer = (CrossEncoderTrainer if curriculum is None else with_curriculum(CrossEncoderTrainer))(
        model=model,
        args=to_training_arguments(params.training, out / "trainer", placement, plan, sampler),
        train_dataset=dataset,
        loss=build_loss(model, params.loss, pairs),
        **extra,
    )
    model_dir = out / "model"
    with onednn_linears(model, enabled=onednn_for_training(placement.device, placement.precision)):
        run = train_and_save(trainer, model, model_dir, plan, "train_cross_encoder")
    return TrainResult(
        model_dir=model_dir,
        log_history=run.history,
        num_parameters=count_parameters(model),
        train_seconds=run.seconds,
        train_examples=len(dataset),
        base_model=resolved.description,
        device=f"{placement.device}/{placement.precision}",
        data_fraction=[] if curriculum is None else trainer.curriculum_sampler.data_fractions(),
        resumed_from_step=run.resumed_from_step,
    )


@dataclass
class RerankResult:
    """A reranked run and its measured throughput.

    Attributes:
        run: qid -> pid -> cross-encoder logit for the reranked top-``depth`` candidates.
        pairs_scored: Number of (query, passage) pairs the model scored.
        seconds: Wall time of scoring.
    """

    run: Run
    pairs_scored: int
    seconds: float

    @property
    def docs_per_second(self) -> float:
        return self.pairs_scored / self.seconds if self.seconds > 0 else 0.0


def score_pairs(model, pairs: Sequence[tuple[str, str]], batch_size: int = 64,
                precision: InferencePrecision = "fp32") -> np.ndarray:
    """Raw logits of a single-label CrossEncoder for (query, passage) pairs, in input order.

    What ``CrossEncoder.predict(activation_fn=Identity())`` computes, faster: every pair is tokenised once, the
    pairs are sorted by exact token length (``predict`` sorts by characters) so each batch pads only to its own
    longest pair, the network runs under ``torch.inference_mode``, and on CPU in fp32 its linear layers compute
    through oneDNN. Scores agree with ``predict`` to ~1e-6 (fp32 sums in another order).

    Nothing in the loop waits for the device: each batch is padded with numpy from one flat array of the sorted
    token ids (no Python loop over rows), written straight into pinned host memory on CUDA and copied with
    ``non_blocking``, and the logits stay on the device until one copy back after the last batch, so the host
    prepares batch n+1 while the GPU computes batch n. (transformers' attention-mask check, ``mask.all()`` in
    ``create_bidirectional_mask``, still syncs once per padded batch.)

    Args:
        model: A sentence-transformers ``CrossEncoder`` with one output label.
        pairs: (query, passage) texts.
        batch_size: Pairs per forward pass.
        precision: ``fp32`` (default: exactly what this function computed before the option existed), or ``bf16``
            / ``fp16`` autocast (:func:`finetune.device.inference_autocast`; fp16 needs a GPU). The returned
            scores are float32 whatever the precision.

    Raises:
        ValueError: The model has more than one output label (no single relevance score), or the precision cannot
            run on the model's device.
    """
    import torch
    from torch.profiler import record_function

    from finetune.device import inference_autocast
    from finetune.ranking.batching import length_sorted_batches
    from finetune.ranking.onednn import onednn_linears, onednn_usable

    network, tokenizer = model.model, model.tokenizer
    if network.config.num_labels != 1:
        raise ValueError(f"reranking needs a single-label cross-encoder; this one has {network.config.num_labels}")
    weight = next(network.parameters())
    autocast = inference_autocast(weight.device.type, precision)  # refuses a precision the device lacks, up front
    scores = np.zeros(len(pairs), dtype=np.float32)
    if not pairs:
        return scores
    with record_function("tokenize"):  # named ranges for the torch profiler (bench/profile_phases.py)
        encoded = tokenizer([q for q, _ in pairs], [p for _, p in pairs], truncation="longest_first",
                            max_length=model.max_seq_length)
    columns = [c for c in ("input_ids", "token_type_ids", "attention_mask") if c in encoded]
    pad_values = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": tokenizer.pad_token_type_id}
    lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
    batches = length_sorted_batches(lengths, batch_size)
    order = np.concatenate(batches)
    ends = np.cumsum(lengths[order])  # token offsets of the sorted pairs in each column's flat array
    flat = {c: np.fromiter(itertools.chain.from_iterable(encoded[c][i] for i in order), dtype=np.int64,
                           count=int(ends[-1])) for c in columns}
    pinned = weight.device.type == "cuda"
    left = tokenizer.padding_side == "left"
    logits = []
    network.eval()
    first = 0
    with torch.inference_mode(), autocast, onednn_linears(network, enabled=onednn_usable(weight)
                                                           and precision == "fp32"):
        for batch in batches:
            rows = lengths[batch]
            width = int(rows[0])  # dynamic padding: the longest pair of this batch (batches go longest first)
            positions = np.arange(width)
            filled = positions >= (width - rows)[:, None] if left else positions < rows[:, None]
            tokens = slice(int(ends[first - 1]) if first else 0, int(ends[first + len(batch) - 1]))
            features = {}
            with record_function("pad_and_copy"):
                for column in columns:
                    host = torch.full((len(batch), width), pad_values.get(column, 0), dtype=torch.int64,
                                      pin_memory=pinned)
                    host.numpy()[filled] = flat[column][tokens]  # row-major: each row's tokens in order
                    features[column] = host.to(weight.device, non_blocking=pinned)
            with record_function("forward"):
                logits.append(network(**features).logits[:, 0])
            first += len(batch)
        with record_function("copy_back"):
            values = torch.cat(logits).float().cpu().numpy()  # the loop's only device-to-host copy
    scores[order] = values
    return scores


def rerank(
    model_dir: str | Path,
    data: RankingSet,
    first_stage: Run,
    depth: int = 100,
    batch_size: int = 64,
    device: str = "auto",
    max_length: int | None = None,
    precision: InferencePrecision = "fp32",
) -> RerankResult:
    """Score each query's top-``depth`` first-stage candidates with the cross-encoder (:func:`score_pairs`, in
    ``precision``).

    Scores are raw logits (no sigmoid): the ranking is the same and saturated probabilities cannot tie.
    Candidates below ``depth`` are dropped from the returned run, so metrics at cut-offs ≤ depth compare
    like with like against the first stage.
    """
    from sentence_transformers.cross_encoder import CrossEncoder

    placement = resolve_placement(device, "auto")  # type: ignore[arg-type]
    model = CrossEncoder(str(model_dir), device=placement.device, max_length=max_length,
                         **sentence_transformers_kwargs())
    keys: list[tuple[str, str]] = []
    for qid in sorted(data.queries):
        keys.extend((qid, pid) for pid in top_candidates(first_stage, qid, depth) if pid in data.corpus)
    start = time.perf_counter()
    scores = score_pairs(model, [(data.queries[q], data.corpus[p]) for q, p in keys], batch_size, precision)
    seconds = time.perf_counter() - start
    run: Run = {qid: {} for qid in sorted(data.queries)}
    for (qid, pid), score in zip(keys, scores, strict=True):
        run[qid][pid] = float(score)
    return RerankResult(run=run, pairs_scored=len(keys), seconds=seconds)


def is_cross_encoder(config) -> bool:
    """Whether a model's transformers config has a one-logit sequence-classification head (scores pairs)."""
    heads = [a for a in getattr(config, "architectures", None) or [] if a.endswith("ForSequenceClassification")]
    return bool(heads) and config.num_labels == 1


def rerank_starting_point(
    spec, data: RankingSet, first_stage: Run, workdir: str | Path, texts: list[str], depth: int = 100,
    batch_size: int = 64, max_length: int | None = None, precision: InferencePrecision = "fp32",
) -> tuple[RerankResult, str]:
    """Rerank with the model a pipeline starts from, untrained: a cross-encoder by its logit (in ``precision``),
    anything else as a bi-encoder (sentence-transformers' pooling, mean pooling for a plain encoder; cosine
    similarity; always fp32).

    Returns:
        (the reranked run and its throughput, ``cross_encoder`` or ``dual_encoder``).
    """
    from transformers import AutoConfig

    from finetune.ranking.dual_encoder import rerank_dual

    resolved = resolve_model(spec, Path(workdir) / "base", texts=texts)
    if is_cross_encoder(AutoConfig.from_pretrained(resolved.name_or_path, **resolved.tokenizer_kwargs())):
        return rerank(resolved.name_or_path, data, first_stage, depth, batch_size, max_length=max_length,
                      precision=precision), "cross_encoder"
    return rerank_dual(resolved.name_or_path, data, first_stage, depth, batch_size,
                       max_length=max_length), "dual_encoder"
