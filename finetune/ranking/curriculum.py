"""Curriculum learning for ranking: per-query difficulty functions and the curriculum-vs-standard comparison.

Penha & Hauff (arXiv 1912.08555) score conversations; here the instance is an MS MARCO query with its mined
candidates (one positive and hard negatives per group, ``finetune.ranking.cross_encoder.mine_hard_negatives``).
Every function returns one **difficulty** per query, higher = harder, and every training row of the query
(pair, list or group) gets its query's score. The paper's heuristics, and the sign that turns each into a
difficulty:

- ``query_length`` (the paper's number of turns / context length): words in the query; longer is harder.
- ``candidate_length``: mean words of the query's candidate passages; longer is harder.
- ``bm25_std``: −σ of the BM25 scores of the query's candidates; candidates BM25 cannot tell apart are harder.
- ``bm25_positive``: −BM25 score of the relevant passage (mean over positives); little word overlap is harder.
- ``semantic_std``: −σ of an encoder's cosine similarities between the query and its candidates.
- ``model_prediction``: −sigmoid of a trained cross-encoder's logit for the positive (mean over positives);
  a confident model means an easy query.
- ``model_loss``: the trained cross-encoder's mean binary cross-entropy over the query's candidates.
- ``random``: a seeded uniform draw per query (a control: a curriculum in random order).

σ is the population standard deviation (``numpy.std``, ddof 0).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from finetune.curriculum import STANDARD
from finetune.data.types import Qrels, Run
from finetune.params import DifficultyParams, RankingEvalParams

DIFFICULTY_FUNCTIONS: tuple[str, ...] = (
    "query_length", "candidate_length", "bm25_std", "bm25_positive", "semantic_std",
    "model_prediction", "model_loss", "random",
)
NEEDS_TRAINED_MODEL = frozenset({"model_prediction", "model_loss"})

Encode = Callable[[list[str]], np.ndarray]
Predict = Callable[[list[tuple[str, str]]], np.ndarray]


def _queries(pairs: pd.DataFrame) -> dict[str, str]:
    if pairs.empty:
        raise ValueError("no training pairs to score")
    return dict(zip(pairs["qid"], pairs["query"], strict=True))


def _candidates(pairs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """qid -> the query's distinct candidates (pid, passage, role; a positive wins over a duplicate negative)."""
    ordered = pairs.sort_values("role", key=lambda r: r != "positive", kind="stable")
    return {qid: group.drop_duplicates("pid") for qid, group in ordered.groupby("qid", sort=True)}


def _words(text: str) -> int:
    return len(text.split())


def query_length(pairs: pd.DataFrame) -> dict[str, float]:
    """Words in each query."""
    return {qid: float(_words(query)) for qid, query in _queries(pairs).items()}


def candidate_length(pairs: pd.DataFrame) -> dict[str, float]:
    """Mean words of each query's distinct candidate passages."""
    return {qid: float(np.mean([_words(p) for p in group["passage"]])) for qid, group in _candidates(pairs).items()}


def bm25_candidate_scores(pairs: pd.DataFrame, k1: float = 0.9, b: float = 0.4,
                          stemmer: str | None = "english") -> dict[str, dict[str, float]]:
    """qid -> pid -> BM25 score of each of the query's candidates.

    The index is the set of all training candidates (so the IDFs come from the training pool), scored with
    :class:`finetune.ranking.bm25.BM25Index`; a candidate sharing no term with its query scores 0. Cost: one
    score vector over the pool per query.
    """
    from finetune.ranking.bm25 import BM25Index

    pool = dict(zip(pairs["pid"], pairs["passage"], strict=True))
    index = BM25Index(pool, k1=k1, b=b, stemmer=stemmer)
    run = index.retrieve(_queries(pairs), k=len(pool))
    return {qid: {pid: run[qid].get(pid, 0.0) for pid in group["pid"]} for qid, group in _candidates(pairs).items()}


def bm25_std(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """−σ of the BM25 scores over each query's candidates (from :func:`bm25_candidate_scores`)."""
    return {qid: -float(np.std(list(by_pid.values()))) for qid, by_pid in scores.items()}


def bm25_positive(pairs: pd.DataFrame, scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """−mean BM25 score of each query's positive passages."""
    return {
        qid: -float(np.mean([scores[qid][pid] for pid in group.loc[group["role"] == "positive", "pid"]]))
        for qid, group in _candidates(pairs).items()
    }


def semantic_std(pairs: pd.DataFrame, encode: Encode) -> dict[str, float]:
    """−σ of the cosine similarities between each query and its candidates.

    Args:
        pairs: Mined training rows.
        encode: texts -> embeddings (rows need not be normalised; cosine is taken here).
    """
    queries, candidates = _queries(pairs), _candidates(pairs)
    qids = sorted(candidates)
    passages = list(dict.fromkeys(p for qid in qids for p in candidates[qid]["passage"]))
    vectors = np.asarray(encode([queries[q] for q in qids] + passages), dtype=np.float64)
    vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    q_vec, p_row = vectors[: len(qids)], {p: len(qids) + i for i, p in enumerate(passages)}
    return {
        qid: -float(np.std([q_vec[i] @ vectors[p_row[p]] for p in candidates[qid]["passage"]]))
        for i, qid in enumerate(qids)
    }


def _logits(pairs: pd.DataFrame, predict: Predict) -> dict[str, pd.DataFrame]:
    candidates = _candidates(pairs)
    queries = _queries(pairs)
    keys = [(qid, passage) for qid, group in candidates.items() for passage in group["passage"]]
    logits = np.asarray(predict([(queries[q], p) for q, p in keys]), dtype=np.float64).reshape(-1)
    out, start = {}, 0
    for qid, group in candidates.items():
        out[qid] = group.assign(logit=logits[start:start + len(group)])
        start += len(group)
    return out


def model_prediction(pairs: pd.DataFrame, predict: Predict) -> dict[str, float]:
    """−mean sigmoid(logit) a trained cross-encoder gives each query's positives.

    Args:
        pairs: Mined training rows.
        predict: (query, passage) pairs -> raw logits.
    """
    return {
        qid: -float(np.mean(1.0 / (1.0 + np.exp(-group.loc[group["role"] == "positive", "logit"].to_numpy()))))
        for qid, group in _logits(pairs, predict).items()
    }


def model_loss(pairs: pd.DataFrame, predict: Predict) -> dict[str, float]:
    """Mean binary cross-entropy of a trained cross-encoder over each query's candidates (positive = 1).

    BCE with logits, computed stably: ``max(z, 0) − z·y + log(1 + e^(−|z|))``.
    """
    out = {}
    for qid, group in _logits(pairs, predict).items():
        z = group["logit"].to_numpy()
        y = (group["role"] == "positive").to_numpy(dtype=np.float64)
        out[qid] = float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))
    return out


def random_difficulty(pairs: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """A uniform draw in [0, 1) per query, seeded by ``(seed, qid)`` so it does not depend on query order."""
    return {qid: random.Random(f"{seed}:{qid}").random() for qid in sorted(_queries(pairs))}


def sentence_encoder(model_path: str, device: str = "auto", batch_size: int = 64, max_length: int = 256,
                     trust_remote_code: bool = False) -> Encode:
    """``encode`` for :func:`semantic_std` from a sentence-transformers model directory or hub id."""
    from sentence_transformers import SentenceTransformer

    from finetune.device import resolve_placement
    from finetune.models.sources import sentence_transformers_kwargs

    model = SentenceTransformer(model_path, device=resolve_placement(device, "auto").device,  # type: ignore[arg-type]
                                **sentence_transformers_kwargs(trust_remote_code))
    model.max_seq_length = max_length
    return lambda texts: model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)


def cross_encoder_predictor(model_dir: str, device: str = "auto", batch_size: int = 64,
                            max_length: int = 256) -> Predict:
    """``predict`` for :func:`model_prediction` / :func:`model_loss`: raw logits of a saved CrossEncoder."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from finetune.device import resolve_placement
    from finetune.models.sources import sentence_transformers_kwargs

    model = CrossEncoder(model_dir, device=resolve_placement(device, "auto").device,  # type: ignore[arg-type]
                         activation_fn=torch.nn.Identity(), max_length=max_length, **sentence_transformers_kwargs())
    return lambda batch: model.predict(batch, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)


def score_difficulty(pairs: pd.DataFrame, params: DifficultyParams, model_dir: str | None = None,
                     workdir: str = ".") -> dict[str, float]:
    """qid -> difficulty (higher = harder) of every training query, by ``params.name``.

    Args:
        pairs: Mined training rows (``qid, query, pid, passage, role``...).
        params: Which function, and its settings.
        model_dir: A trained cross-encoder, for ``model_prediction`` and ``model_loss``.
        workdir: Where a tiny ``semantic_model`` is built.

    Raises:
        ValueError: Unknown function, or a model-based function without ``model_dir``.
    """
    name = params.name
    if name == "query_length":
        return query_length(pairs)
    if name == "candidate_length":
        return candidate_length(pairs)
    if name in ("bm25_std", "bm25_positive"):
        scores = bm25_candidate_scores(pairs, params.k1, params.b, params.stemmer)
        return bm25_std(scores) if name == "bm25_std" else bm25_positive(pairs, scores)
    if name == "semantic_std":
        from finetune.models.sources import resolve_model
        from finetune.params import PackagedModel

        spec = params.semantic_model or PackagedModel()
        texts = pairs["query"].drop_duplicates().tolist() + pairs["passage"].drop_duplicates().tolist()
        resolved = resolve_model(spec, workdir, texts=texts)
        return semantic_std(pairs, sentence_encoder(resolved.name_or_path, batch_size=params.batch_size,
                                                    max_length=params.max_length,
                                                    trust_remote_code=resolved.trust_remote_code))
    if name in NEEDS_TRAINED_MODEL:
        if model_dir is None:
            raise ValueError(f"difficulty {name!r} needs a trained cross-encoder (model_dir)")
        predict = cross_encoder_predictor(str(model_dir), batch_size=params.batch_size, max_length=params.max_length)
        return model_prediction(pairs, predict) if name == "model_prediction" else model_loss(pairs, predict)
    if name == "random":
        return random_difficulty(pairs, params.seed)
    raise ValueError(f"unknown difficulty function {name!r}; choose one of {list(DIFFICULTY_FUNCTIONS)}")


def difficulty_summary(scores: Mapping[str, float]) -> dict[str, float]:
    """Count, min, median and max of the per-query difficulties (for step metadata)."""
    values = np.array(list(scores.values()), dtype=np.float64)
    return {"queries": float(len(values)), "min": float(values.min()), "median": float(np.median(values)),
            "max": float(values.max())}


def compare_curricula(
    qrels: Qrels,
    first_stage: tuple[str, Run],
    trained: Mapping[str, Run],
    evaluation: RankingEvalParams,
    starting_point: Run | None = None,
) -> tuple[dict[str, float], dict, str]:
    """Evaluate standard training and every curriculum with ranx, testing each against standard training.

    Args:
        qrels: Judgments of the evaluation queries.
        first_stage: (name, run) of the first stage (e.g. ``bm25``).
        trained: arm name -> reranked run; must include ``standard_training``.
        evaluation: Metrics, primary metric, relevance level, test and alpha.
        starting_point: The untrained starting model's run (``zero_shot``), when evaluated: listed beside the arms
            (never chosen as best) and the best arm is tested against it too (the gate's ``starting_point``
            baseline keys, ``p_value_test_<metric>_vs_zero_shot``).

    Returns:
        ``metrics``: ``<arm>_test_<metric>`` for every arm and the first stage, ``p_value_<arm>_test_<metric>``
        against standard training, and for the best arm (highest primary metric; standard training wins ties)
        the flat keys the promotion gate reads (``test_<metric>``, ``<first stage>_test_<metric>``,
        ``p_value_test_<metric>``, ``significant_test_<metric>`` against the first stage).
        ``comparison``: the :class:`~finetune.ranking.metrics.RunComparison` against standard training, as a dict.
        ``best``: the best arm's name.
    """
    from dataclasses import asdict

    from finetune.ranking.evaluation import STARTING_POINT, comparison_metrics, metric_key, versus_metrics
    from finetune.ranking.metrics import compare_runs

    if STANDARD not in trained:
        raise ValueError(f"trained runs must include {STANDARD!r}, got {sorted(trained)}")
    base_name, base_run = first_stage
    common = dict(metrics=list(evaluation.metrics), stat_test=evaluation.stat_test, alpha=evaluation.alpha,
                  relevance_level=evaluation.relevance_level)
    if STARTING_POINT in trained:
        raise ValueError(f"{STARTING_POINT!r} is the starting model's run, not an arm name")
    start = {} if starting_point is None else {STARTING_POINT: starting_point}
    comparison = compare_runs(qrels, {base_name: base_run, **start, **trained}, baseline=STANDARD, **common)
    primary = evaluation.primary_metric
    best = max(trained, key=lambda arm: (comparison.means[arm][primary], arm == STANDARD))
    metrics: dict[str, float] = {}
    for run, means in comparison.means.items():
        for metric, value in means.items():
            metrics[metric_key(metric, run)] = value
            if run in comparison.p_values:
                metrics[f"p_value_{metric_key(metric, run)}"] = comparison.p_values[run][metric]
    gate = compare_runs(qrels, {base_name: base_run, **start, best: trained[best]}, baseline=base_name, **common)
    metrics.update(comparison_metrics(gate, candidate=best, baseline=base_name))
    if starting_point is not None:
        metrics.update(versus_metrics(gate, best, STARTING_POINT, evaluation.stat_test, evaluation.alpha))
    return metrics, asdict(comparison), best
