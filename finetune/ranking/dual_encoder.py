"""Dual encoders (bi-encoders): building, training with sentence-transformers, dense retrieval and reranking.

Queries and passages are embedded separately and scored by a dot product or cosine similarity, so passages can
be embedded once and searched (``finetune.ranking.dense_search``). The training loop is sentence-transformers'
``SentenceTransformerTrainer``; this module builds the model (shared or separate towers, mean or CLS pooling),
turns mined groups or teacher scores into the loss's columns and maps our parameters onto its arguments.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from finetune.data.types import RankingSet, Run
from finetune.device import Placement, resolve_placement
from finetune.models.layer_dropping import drop_layers
from finetune.models.sources import count_parameters, pretrained_kwargs, resolve_model, sentence_transformers_kwargs
from finetune.params import DenseEvalParams, DualEncoderParams, RankingEvalParams, TrainingParams
from finetune.ranking.cross_encoder import RerankResult, to_loss_dataset, top_candidates
from finetune.ranking.dense_search import search
from finetune.ranking.evaluation import STARTING_POINT, comparison_metrics, metric_key, versus_metrics
from finetune.ranking.metrics import RunComparison, compare_runs
from finetune.training import (
    CheckpointPlan,
    checkpoint_plan,
    common_training_arguments,
    seed_before_building,
    train_and_save,
)

logger = logging.getLogger(__name__)

TEACHER_LOSSES = ("margin_mse", "kl")
EMBEDDING_LOSS = "embedding_mse"


def build_dual_encoder(base_path: str | Path, params: DualEncoderParams, device: str = "cpu",
                       trust_remote_code: bool = False):
    """A ``SentenceTransformer``: transformer → pooling (→ normalise for cosine), one tower or two.

    ``separate`` towers wrap two independent copies of the starting weights in a ``Router`` with ``query`` and
    ``document`` routes; ``encode_query`` / ``encode_document`` pick the route. ``trust_remote_code`` comes from
    the model spec (weights are read from safetensors only).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Router, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    def tower() -> list:
        transformer = Transformer(str(base_path), max_seq_length=params.training.max_length,
                                  model_kwargs=pretrained_kwargs(trust_remote_code),
                                  processor_kwargs=pretrained_kwargs(trust_remote_code, weights=False),
                                  config_kwargs=pretrained_kwargs(trust_remote_code, weights=False))
        modules = [transformer, Pooling(transformer.get_embedding_dimension(), params.pooling)]
        return modules + [Normalize()] if params.similarity == "cosine" else modules

    modules = tower() if params.towers == "shared" else [
        Router.for_query_document(query_modules=tower(), document_modules=tower())
    ]
    return SentenceTransformer(modules=modules, similarity_fn_name=params.similarity, device=device)


def teacher_groups(teacher_scores: pd.DataFrame) -> tuple[list[pd.DataFrame], int]:
    """Groups (one positive, then its negatives) that have the most common number of negatives, and that number.

    Losses over (query, positive, negative_1..n) columns need the same n for every row; shorter groups (a query
    with too few candidates) are dropped with a warning.
    """
    if teacher_scores.empty:
        raise ValueError("no training groups: no training query has a judged positive passage in the collection")
    groups = [g for _, g in teacher_scores.groupby("group", sort=True)]
    n = max(len(g) - 1 for g in groups)
    full = [g for g in groups if len(g) - 1 == n]
    if len(full) < len(groups):
        logger.warning("dropped %d groups with fewer than %d negatives", len(groups) - len(full), n)
    return full, n


def distillation_dataset(teacher_scores: pd.DataFrame):
    """(query, positive, negative_1..n) → label [teacher score of the positive, of negative_1, ..., negative_n].

    sentence-transformers' MarginMSELoss turns n+1 scores into the n margins s(q,p+) − s(q,p−_i) itself, and
    DistillKLDivLoss softmaxes them, so one layout serves both losses (bi- and cross-encoder MarginMSE alike).
    """
    from datasets import Dataset

    groups, n = teacher_groups(teacher_scores)
    columns = {"query": [g["query"].iloc[0] for g in groups], "positive": [g["passage"].iloc[0] for g in groups]}
    for i in range(n):
        columns[f"negative_{i + 1}"] = [g["passage"].iloc[i + 1] for g in groups]
    columns["label"] = [g["teacher_score"].astype(float).tolist() for g in groups]
    return Dataset.from_dict(columns)


def embedding_dataset(frame: pd.DataFrame, teacher_dir: str | Path, device: str = "auto",
                      max_length: int | None = None, batch_size: int = 64):
    """Every distinct query and passage of ``frame`` → the dual-encoder teacher's embedding of it (``label``).

    The teacher embeds queries with ``encode_query`` and passages with ``encode_document`` (the same tower unless
    it has two); the student, one shared tower, learns to reproduce both (sentence-transformers' ``MSELoss``).
    """
    from datasets import Dataset

    queries = frame["query"].drop_duplicates().tolist()
    passages = frame["passage"].drop_duplicates().tolist()
    teacher = load_dual_encoder(teacher_dir, device, max_length)
    labels = np.concatenate([encode(teacher, queries, "query", batch_size).float().cpu().numpy(),
                             encode(teacher, passages, "document", batch_size).float().cpu().numpy()])
    return Dataset.from_dict({"text": queries + passages, "label": labels.tolist()})


def to_dataset(frame: pd.DataFrame, loss: str):
    """Training rows for ``loss``: mined groups for ``mnrl``, teacher-scored groups for the distillation losses."""
    if loss == "mnrl":
        return to_loss_dataset(frame, "mnrl")
    if loss in TEACHER_LOSSES:
        if "teacher_score" not in frame.columns:
            raise ValueError(f"dual_encoder.loss '{loss}' learns from teacher scores; use the "
                             "dual_encoder_distillation pipeline (or loss: mnrl)")
        return distillation_dataset(frame)
    if loss == EMBEDDING_LOSS:
        raise ValueError("dual_encoder.loss 'embedding_mse' learns a dual-encoder teacher's embeddings; use the "
                         "dual_encoder_distillation pipeline")
    raise ValueError(f"unknown dual-encoder loss '{loss}'")


def build_loss(model, params: DualEncoderParams):
    """The sentence-transformers loss for ``params.loss`` with the similarity matching the model's."""
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.util import cos_sim, dot_score, pairwise_cos_sim, pairwise_dot_score

    cosine = params.similarity == "cosine"
    if params.loss == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, scale=params.mnrl_scale,
                                                   similarity_fct=cos_sim if cosine else dot_score)
    pairwise = pairwise_cos_sim if cosine else pairwise_dot_score
    if params.loss == "margin_mse":
        return losses.MarginMSELoss(model, similarity_fct=pairwise)
    if params.loss == "kl":
        return losses.DistillKLDivLoss(model, similarity_fct=pairwise, temperature=params.temperature)
    if params.loss == EMBEDDING_LOSS:
        return losses.MSELoss(model)
    raise ValueError(f"unknown dual-encoder loss '{params.loss}'")


def to_training_arguments(
    params: TrainingParams, output_dir: str | Path, placement: Placement, router_mapping: dict[str, str] | None = None,
    checkpoints: CheckpointPlan | None = None, batch_sampler: Callable | None = None,
):
    """Map our training parameters onto ``SentenceTransformerTrainingArguments`` (the one place this happens).

    ``no_duplicates`` batching (the default) keeps a passage from appearing twice in a batch, where MNRL would
    count it as its own in-batch negative. ``batch_sampler`` replaces it with a batch-sampler factory
    (:func:`finetune.ranking.cross_encoder.length_grouped_sampler`) for a loss without in-batch negatives.
    """
    from sentence_transformers import SentenceTransformerTrainingArguments

    return SentenceTransformerTrainingArguments(
        **{**common_training_arguments(params, output_dir, placement), **(checkpoints or CheckpointPlan()).arguments()},
        batch_sampler="no_duplicates" if batch_sampler is None else batch_sampler,
        router_mapping=router_mapping or {},
    )


@dataclass
class DualTrainResult:
    """What dual-encoder training produced (see ``finetune.ranking.cross_encoder.TrainResult``)."""

    model_dir: Path
    log_history: list[dict] = field(default_factory=list)
    num_parameters: int = 0
    train_seconds: float = 0.0
    train_examples: int = 0
    base_model: str = ""
    kept_layers: tuple[int, ...] | None = None
    device: str = ""
    resumed_from_step: int = 0


def prepare_base(
    params: DualEncoderParams, workdir: str | Path, texts: list[str], base_path: str | Path | None = None,
    description: str | None = None, default_every_other: bool = False,
) -> tuple[Path, str, tuple[int, ...] | None]:
    """Starting weights: ``base_path`` (a teacher) or ``params.model``, with ``keep_layers`` applied.

    ``default_every_other`` drops every other layer when ``keep_layers`` is unset (student from a teacher).
    """
    work = Path(workdir)
    if base_path is not None and (Path(base_path) / "router_config.json").is_file():
        raise ValueError(f"{base_path}: a two-tower teacher cannot seed a student's towers; "
                         "set distillation.from_teacher: false and a student.model")
    if base_path is None:
        resolved = resolve_model(params.model, work / "base", texts=texts)
        base_path, description = Path(resolved.name_or_path), resolved.description
    kept = None
    if params.keep_layers is not None or default_every_other:
        kept = drop_layers(base_path, work / "base_dropped", params.keep_layers)
        base_path, description = work / "base_dropped", f"{description}, layers {list(kept)}"
    return Path(base_path), str(description), kept


def router_mapping(dataset, towers: str) -> dict[str, str] | None:
    """Column → Router route: the ``query`` column to the query tower, every other text column to documents."""
    if towers == "shared":
        return None
    return {c: ("query" if c == "query" else "document") for c in dataset.column_names if c != "label"}


def train_dual_encoder(
    frame: pd.DataFrame,
    params: DualEncoderParams,
    output_dir: str | Path,
    base_path: str | Path | None = None,
    base_description: str | None = None,
    default_every_other: bool = False,
    teacher_dir: str | Path | None = None,
) -> DualTrainResult:
    """Train a bi-encoder on mined groups (``mnrl``), teacher-scored groups (``margin_mse``/``kl``) or a
    dual-encoder teacher's embeddings of the groups' queries and passages (``embedding_mse``).

    Args:
        frame: ``mine_hard_negatives`` rows, or the same rows with a ``teacher_score`` column.
        params: Model, towers, pooling, similarity, loss and optimisation settings.
        output_dir: Work folder; the model is saved to ``<output_dir>/model``.
        base_path: Start from this model directory (a teacher) instead of ``params.model``.
        base_description: One line naming ``base_path`` for metadata.
        default_every_other: Keep every other layer when ``params.keep_layers`` is unset.
        teacher_dir: The dual-encoder teacher whose embeddings ``embedding_mse`` learns.
    """
    from sentence_transformers import SentenceTransformerTrainer

    out = Path(output_dir)
    placement = resolve_placement(params.training.device, params.training.precision)
    if params.loss == EMBEDDING_LOSS:
        if teacher_dir is None:
            raise ValueError("student.loss embedding_mse needs the teacher's model directory")
        dataset = embedding_dataset(frame, teacher_dir, placement.device, params.training.max_length)
        if params.similarity == "cosine":  # checked before the student's base is written
            norms = np.linalg.norm(np.asarray(dataset[:256]["label"]), axis=1)
            if not np.allclose(norms, 1.0, atol=1e-3):
                raise ValueError(f"student.similarity: cosine normalises the student's embeddings, but the teacher's "
                                 f"are not unit length (norm {norms.mean():.3g}); use similarity: dot to learn them")
    else:
        dataset = to_dataset(frame, params.loss)
    texts = frame["query"].drop_duplicates().tolist() + frame["passage"].drop_duplicates().tolist()
    path, description, kept = prepare_base(params, out, texts, base_path, base_description, default_every_other)
    trusted = base_path is None and getattr(params.model, "trust_remote_code", False)  # a teacher is our own save
    seed_before_building(params.training.seed)
    model = build_dual_encoder(path, params, device=placement.device, trust_remote_code=trusted)
    if params.loss == EMBEDDING_LOSS and model.get_embedding_dimension() != len(dataset[0]["label"]):
        raise ValueError(f"student.loss embedding_mse: the student embeds in {model.get_embedding_dimension()} "
                         f"dimensions, the teacher in {len(dataset[0]['label'])}; start from the teacher "
                         "(from_teacher: true) or a model of the same width")
    plan = checkpoint_plan("dual_encoder", params.training.checkpoints, params, frame, path)
    # Learning embeddings mixes ~10-token queries with ~80-token passages and has no in-batch negatives, so its
    # batches are length-grouped; the other losses keep no_duplicates batches for their in-batch negatives.
    sampler = None
    if params.loss == EMBEDDING_LOSS and params.length_grouped_batches and params.towers == "shared":
        from finetune.ranking.cross_encoder import length_grouped_sampler

        sampler = length_grouped_sampler(dataset, model.tokenizer, params.training)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=to_training_arguments(params.training, out / "trainer", placement, router_mapping(dataset, params.towers),
                                   plan, sampler),
        train_dataset=dataset,
        loss=build_loss(model, params),
    )
    model_dir = out / "model"
    run = train_and_save(trainer, model, model_dir, plan, "train_dual_encoder")
    return DualTrainResult(
        model_dir=model_dir,
        log_history=run.history,
        num_parameters=count_parameters(model),
        train_seconds=run.seconds,
        train_examples=len(dataset),
        base_model=description,
        kept_layers=kept,
        device=f"{placement.device}/{placement.precision}",
        resumed_from_step=run.resumed_from_step,
    )


def load_dual_encoder(model_dir: str | Path, device: str = "auto", max_length: int | None = None):
    """Load a saved bi-encoder on the resolved device."""
    from sentence_transformers import SentenceTransformer

    placement = resolve_placement(device, "auto")  # type: ignore[arg-type]
    model = SentenceTransformer(str(model_dir), device=placement.device, **sentence_transformers_kwargs())
    if max_length is not None:
        model.max_seq_length = max_length
    return model


def encode(model, texts: list[str], role: str, batch_size: int = 64):
    """Embeddings (torch, on the model's device) of queries (``role='query'``) or passages (``'document'``)."""
    method = model.encode_query if role == "query" else model.encode_document
    return method(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)


@dataclass
class DenseEvaluation:
    """Dense retrieval over the whole corpus and reranking of the first stage, from one corpus encoding.

    Attributes:
        retrieval: qid -> pid -> similarity for each query's top ``k`` passages of the corpus.
        rerank: qid -> pid -> similarity for each query's first-stage top ``depth``.
        passages_encoded: Corpus size.
        encode_seconds: Wall time of encoding the corpus and the queries.
        search_seconds: Wall time of the top-k search.
    """

    retrieval: Run
    rerank: Run
    passages_encoded: int
    encode_seconds: float
    search_seconds: float

    @property
    def docs_per_second(self) -> float:
        return self.passages_encoded / self.encode_seconds if self.encode_seconds > 0 else 0.0


def dense_evaluation(
    model, data: RankingSet, first_stage: Run, k: int = 100, depth: int = 100, batch_size: int = 64,
    chunk_size: int = 65_536, backend: str = "auto",
) -> DenseEvaluation:
    """Encode the corpus once, then search it exactly and rescore the first stage's candidates."""
    pids, qids = sorted(data.corpus), sorted(data.queries)
    start = time.perf_counter()
    passages = encode(model, [data.corpus[p] for p in pids], "document", batch_size)
    queries = encode(model, [data.queries[q] for q in qids], "query", batch_size)
    encoded = time.perf_counter() - start
    if model.similarity_fn_name == "cosine":  # inner-product search on unit vectors is cosine similarity
        passages = passages / passages.norm(dim=1, keepdim=True).clamp_min(1e-12)
        queries = queries / queries.norm(dim=1, keepdim=True).clamp_min(1e-12)
    start = time.perf_counter()
    scores, index = search(queries, passages, k, chunk_size, backend)
    searched = time.perf_counter() - start
    retrieval = {q: {pids[int(i)]: float(s) for s, i in zip(scores[n], index[n], strict=True)}
                 for n, q in enumerate(qids)}
    row = {p: i for i, p in enumerate(pids)}
    rerank: Run = {}
    for n, q in enumerate(qids):
        candidates = [p for p in top_candidates(first_stage, q, depth) if p in row]
        rows = [row[p] for p in candidates]
        values = (passages[rows] @ queries[n]).tolist() if rows else []
        rerank[q] = dict(zip(candidates, (float(v) for v in values), strict=True))
    return DenseEvaluation(retrieval, rerank, len(pids), encoded, searched)


def score_pairs(model, queries: list[str], passages: list[str], batch_size: int = 64) -> np.ndarray:
    """Similarity of each (query, passage) pair; each distinct text is encoded once."""
    import torch

    unique_q, unique_p = sorted(set(queries)), sorted(set(passages))
    q = encode(model, unique_q, "query", batch_size)
    p = encode(model, unique_p, "document", batch_size)
    qi = {t: i for i, t in enumerate(unique_q)}
    pi = {t: i for i, t in enumerate(unique_p)}
    rows = torch.tensor([qi[t] for t in queries], dtype=torch.long, device=q.device)
    cols = torch.tensor([pi[t] for t in passages], dtype=torch.long, device=p.device)
    if model.similarity_fn_name == "cosine":
        q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        p = p / p.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (q[rows] * p[cols]).sum(dim=1).float().cpu().numpy()


def rerank_dual(
    model_dir: str | Path, data: RankingSet, first_stage: Run, depth: int = 100, batch_size: int = 64,
    device: str = "auto", max_length: int | None = None,
) -> RerankResult:
    """Rescore each query's first-stage top ``depth`` with a bi-encoder; the timing includes encoding."""
    model = load_dual_encoder(model_dir, device, max_length)
    keys = [(q, p) for q in sorted(data.queries) for p in top_candidates(first_stage, q, depth) if p in data.corpus]
    start = time.perf_counter()
    scores = score_pairs(model, [data.queries[q] for q, _ in keys], [data.corpus[p] for _, p in keys],
                         batch_size) if keys else []
    seconds = time.perf_counter() - start
    run: Run = {q: {} for q in sorted(data.queries)}
    for (q, p), score in zip(keys, scores, strict=True):
        run[q][p] = float(score)
    return RerankResult(run=run, pairs_scored=len(keys), seconds=seconds)


def evaluate_dense(
    model_dir: str | Path,
    data: RankingSet,
    first_stage: Run,
    baseline: str,
    evaluation: RankingEvalParams,
    dense: DenseEvalParams,
    max_length: int | None = None,
    start_dir: str | Path | None = None,
) -> tuple[RunComparison, dict[str, float], dict[str, float]]:
    """Dense retrieval and first-stage reranking with a saved bi-encoder, both compared with the baseline.

    The ``dense.primary`` run is the candidate: its metrics are ``test_<metric>`` (and decide promotion); the
    other run's are ``rerank_test_<metric>`` or ``dense_test_<metric>``, each with its p-value against the baseline.
    ``start_dir`` is the untrained starting model: it runs the same two evaluations as ``zero_shot`` (the primary
    kind) and ``zero_shot_<secondary>``, and the candidate gets a paired test against ``zero_shot``.

    Returns:
        (comparison of baseline, primary and secondary runs; flat metrics; throughput stats).
    """
    model = load_dual_encoder(model_dir, max_length=max_length)
    result = dense_evaluation(model, data, first_stage, dense.k, evaluation.rerank_depth, evaluation.batch_size,
                              dense.chunk_size, dense.backend)
    named = {"dense": result.retrieval, "rerank": result.rerank}
    primary, secondary = ("dense", "rerank") if dense.primary == "retrieval" else ("rerank", "dense")
    runs = {baseline: first_stage, primary: named[primary], secondary: named[secondary]}
    if start_dir is not None:
        start = dense_evaluation(load_dual_encoder(start_dir, max_length=max_length), data, first_stage, dense.k,
                                 evaluation.rerank_depth, evaluation.batch_size, dense.chunk_size, dense.backend)
        started = {"dense": start.retrieval, "rerank": start.rerank}
        runs[STARTING_POINT] = started[primary]
        runs[f"{STARTING_POINT}_{secondary}"] = started[secondary]
    comparison = compare_runs(
        data.qrels, runs,
        metrics=list(evaluation.metrics), baseline=baseline, stat_test=evaluation.stat_test, alpha=evaluation.alpha,
        relevance_level=evaluation.relevance_level,
    )
    metrics = comparison_metrics(comparison, candidate=primary, baseline=baseline)
    for metric in evaluation.metrics:
        metrics[metric_key(metric, secondary)] = comparison.means[secondary][metric]
        metrics[f"p_value_{metric_key(metric, secondary)}"] = comparison.p_values[secondary][metric]
    if start_dir is not None:
        metrics.update(versus_metrics(comparison, primary, STARTING_POINT, evaluation.stat_test, evaluation.alpha))
        for metric in evaluation.metrics:
            metrics[metric_key(metric, f"{STARTING_POINT}_{secondary}")] = \
                comparison.means[f"{STARTING_POINT}_{secondary}"][metric]
    stats = {
        "docs_per_second": round(result.docs_per_second, 1),
        "passages_encoded": float(result.passages_encoded),
        "encode_seconds": round(result.encode_seconds, 3),
        "search_seconds": round(result.search_seconds, 3),
    }
    return comparison, metrics, stats
