"""Knowledge distillation for rankers: score training tuples with a teacher once, train a smaller student on them.

The teacher is a cross-encoder (one logit per (query, passage)) or a dual encoder (similarity of embeddings);
its scores for every mined (query, positive, negatives) group become a ``teacher_score`` column, which the
pipelines store as the ``teacher_scores`` artifact so a second run reuses it. A cross-encoder student learns them
with sentence-transformers' cross-encoder MarginMSELoss / MSELoss / ListNetLoss (``kl``); a dual-encoder student
with MarginMSELoss / DistillKLDivLoss (``finetune.ranking.dual_encoder``). Students start from a smaller model or
from the teacher with layers dropped (``finetune.models.layer_dropping``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from finetune.data.types import RankingSet, Run
from finetune.device import InferencePrecision, resolve_placement
from finetune.models.layer_dropping import drop_layers
from finetune.models.sources import count_parameters, resolve_model, sentence_transformers_kwargs
from finetune.params import CrossEncoderDistillationParams, EnsembleMember, RankingEvalParams, TeacherParams
from finetune.ranking import cross_encoder, dual_encoder
from finetune.ranking.cross_encoder import RerankResult, TrainResult
from finetune.ranking.evaluation import comparison_metrics, metric_key, versus_metrics
from finetune.ranking.fusion import fuse
from finetune.ranking.metrics import RunComparison, compare_runs
from finetune.training import checkpoint_plan, seed_before_building, train_and_save

ARCHITECTURES = ("cross_encoder", "dual_encoder")


def save_encoder(spec, architecture: str, target: str | Path, texts: list[str]) -> tuple[Path, str, int]:
    """Load a cross- or dual encoder from a model spec (a distillation teacher, the RAG retriever) and save it as a
    self-contained directory (hub ids become files).

    Returns:
        (directory, one-line description, parameter count).
    """
    from sentence_transformers import CrossEncoder, SentenceTransformer

    if architecture not in ARCHITECTURES:
        raise ValueError(f"teacher.architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    target = Path(target)
    resolved = resolve_model(spec, target.parent / "teacher_base", texts=texts)
    load = resolved.sentence_transformers_kwargs()
    if architecture == "cross_encoder":
        model = CrossEncoder(resolved.name_or_path, num_labels=1, device="cpu", **load)
    else:
        model = SentenceTransformer(resolved.name_or_path, device="cpu", **load)
    model.save_pretrained(str(target))
    return target, f"{architecture} {resolved.description}", count_parameters(model)


def score_with(
    model_dir: str | Path, architecture: str, queries: list[str], passages: list[str], batch_size: int = 64,
    device: str = "auto", max_length: int | None = None,
) -> tuple[np.ndarray, float]:
    """Score (query, passage) pairs with a saved cross- or dual encoder; returns (scores, seconds of scoring).

    Cross-encoder scores are raw logits; dual-encoder scores the model's similarity (dot or cosine).
    """
    import torch
    from sentence_transformers import CrossEncoder

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown model architecture {architecture!r}; expected one of {ARCHITECTURES}")
    placement = resolve_placement(device, "auto")  # type: ignore[arg-type]
    if architecture == "cross_encoder":
        model = CrossEncoder(str(model_dir), device=placement.device, activation_fn=torch.nn.Identity(),
                             max_length=max_length, **sentence_transformers_kwargs())
        start = time.perf_counter()
        scores = model.predict(list(zip(queries, passages, strict=True)), batch_size=batch_size,
                               show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float64), time.perf_counter() - start
    model = dual_encoder.load_dual_encoder(model_dir, device, max_length)
    start = time.perf_counter()
    scores = dual_encoder.score_pairs(model, queries, passages, batch_size)
    return np.asarray(scores, dtype=np.float64), time.perf_counter() - start


def with_unlabeled(pairs: pd.DataFrame, candidates: pd.DataFrame | None) -> pd.DataFrame:
    """The mined groups followed by the unlabeled queries' candidate groups, renumbered after the mined ones."""
    if candidates is None or candidates.empty:
        return pairs
    shifted = candidates.copy()
    first = int(pairs["group"].max()) + 1 if not pairs.empty else 0
    shifted["group"] = shifted["group"] - int(shifted["group"].min()) + first
    return pd.concat([pairs, shifted[pairs.columns]], ignore_index=True)


def score_teacher(
    pairs: pd.DataFrame, model_dir: str | Path, architecture: str, batch_size: int = 64, device: str = "auto",
    max_length: int | None = None,
) -> tuple[pd.DataFrame, float]:
    """The mined rows with the teacher's score of each (query, passage) in a ``teacher_score`` column.

    Returns:
        (rows with ``teacher_score``, seconds spent scoring).
    """
    if pairs.empty:
        raise ValueError("no training pairs to score: no training query has a judged positive passage")
    scores, seconds = score_with(model_dir, architecture, pairs["query"].tolist(), pairs["passage"].tolist(),
                                 batch_size, device, max_length)
    scored = pairs.copy()
    scored["teacher_score"] = scores
    return scored, seconds


def fuse_group_scores(groups, columns: list, weights: list[float]) -> np.ndarray:
    """Within each group, min-max normalise every score column to [0, 1] and sum them with ``weights`` (a group
    whose scores are all equal contributes 0 for that column): ``finetune.ranking.fusion.fuse`` with each group as
    a query and each row as a passage."""
    groups = np.asarray(groups)
    runs = []
    for column, weight in zip(columns, weights, strict=True):
        run: Run = {}
        for row, (group, score) in enumerate(zip(groups, np.asarray(column, dtype=np.float64), strict=True)):
            run.setdefault(str(group), {})[str(row)] = float(score)
        runs.append((run, weight))
    fused = fuse(runs)
    return np.array([fused[str(group)][str(row)] for row, group in enumerate(groups)], dtype=np.float64)


def score_member(rows: pd.DataFrame, member: EnsembleMember, workdir: str | Path, device: str = "auto"
                 ) -> tuple[np.ndarray, float, str]:
    """One ensemble member's scores of ``rows`` (tiny members build their tokenizer on the rows' texts).

    Returns:
        (scores, seconds of scoring, one-line description of the model).
    """
    texts = rows["query"].drop_duplicates().tolist() + rows["passage"].drop_duplicates().tolist()
    queries, passages = rows["query"].tolist(), rows["passage"].tolist()
    if member.architecture == "query_likelihood":
        from finetune.models.causal import base_model_directory
        from finetune.ranking.query_likelihood import score_query_likelihood

        directory, description = base_model_directory(member.model, workdir, texts)
        scores, seconds = score_query_likelihood(directory, queries, passages, member.batch_size, member.max_length,
                                                 device, member.precision)
        return scores, seconds, f"query_likelihood {description}"
    directory, description, _ = save_encoder(member.model, member.architecture, Path(workdir) / "model", texts)
    scores, seconds = score_with(directory, member.architecture, queries, passages, member.batch_size, device,
                                 member.max_length)
    return scores, seconds, description


def add_ensemble_scores(scored: pd.DataFrame, teacher: TeacherParams, workdir: str | Path
                        ) -> tuple[pd.DataFrame, list[dict]]:
    """With ``teacher.ensemble``: each member's scores as ``ensemble_<i>_score``, the teacher's own as
    ``teacher_model_score``, and ``teacher_score`` replaced by the fusion of all (``fuse_group_scores`` within each
    ``group`` with the teacher's and the members' weights). Without an ensemble the rows come back unchanged.

    Returns:
        (rows, one dict per member: description, weight, scoring seconds).
    """
    if not teacher.ensemble:
        return scored, []
    fused = scored.copy()
    fused["teacher_model_score"] = fused["teacher_score"]
    columns, weights, stats = [fused["teacher_model_score"].to_numpy()], [teacher.teacher_weight], []
    for i, member in enumerate(teacher.ensemble):
        scores, seconds, description = score_member(fused, member, Path(workdir) / f"member_{i}", teacher.device)
        fused[f"ensemble_{i}_score"] = scores
        columns.append(scores)
        weights.append(member.weight)
        stats.append({"member": description, "weight": member.weight, "scoring_seconds": round(seconds, 2)})
    fused["teacher_score"] = fuse_group_scores(fused["group"].to_numpy(), columns, weights)
    return fused, stats


def cross_encoder_dataset(teacher_scores: pd.DataFrame, loss: str, temperature: float = 1.0,
                          label_weight: float = 0.0):
    """Columns for each cross-encoder distillation loss.

    - ``margin_mse``: (query, positive, negative_1..n) → [s(q,p+), s(q,p−_1), ..., s(q,p−_n)] (the loss takes
      the differences).
    - ``mse``: (query, passage) → s(q,p), every row of every group.
    - ``kl``: (query, [positive, negatives]) → teacher scores / ``temperature`` (ListNetLoss softmaxes them).
      With ``label_weight`` λ > 0, a group whose first row has ``role`` ``positive`` gets the labels
      ``log((1 − λ)·softmax(scores / temperature) + λ·onehot(0))`` instead: ListNet's softmax of them is that
      mixture, so the loss is λ·CE(judgment) + (1 − λ)·CE(teacher).
    """
    from datasets import Dataset

    if loss == "margin_mse":
        return dual_encoder.distillation_dataset(teacher_scores)
    if loss == "mse":
        if teacher_scores.empty:
            raise ValueError("no teacher scores to train on")
        return Dataset.from_dict({
            "query": teacher_scores["query"].tolist(),
            "passage": teacher_scores["passage"].tolist(),
            "label": teacher_scores["teacher_score"].astype(float).tolist(),
        })
    if loss == "kl":
        groups, _ = dual_encoder.teacher_groups(teacher_scores)
        if label_weight > 0 and "role" not in teacher_scores.columns:
            raise ValueError("label_weight needs the mined rows' 'role' column to find each judged positive")
        return Dataset.from_dict({
            "query": [g["query"].iloc[0] for g in groups],
            "docs": [g["passage"].tolist() for g in groups],
            "labels": [listwise_target(g, temperature, label_weight) for g in groups],
        })
    raise ValueError(f"unknown distillation loss '{loss}'")


def listwise_target(group: pd.DataFrame, temperature: float, label_weight: float) -> list[float]:
    """One group's ListNet labels: teacher scores / temperature, or the log of their mixture with the judgment."""
    logits = group["teacher_score"].to_numpy(dtype=np.float64) / temperature
    if label_weight <= 0 or group["role"].iloc[0] != "positive":
        return logits.tolist()
    shifted = np.exp(logits - logits.max())
    target = (1.0 - label_weight) * shifted / shifted.sum()
    target[0] += label_weight
    return np.log(target).tolist()


def cross_encoder_loss(model, loss: str):
    """sentence-transformers' cross-encoder loss for ``loss`` (raw logits, no activation)."""
    from sentence_transformers.cross_encoder import losses

    if loss == "margin_mse":
        return losses.MarginMSELoss(model)
    if loss == "mse":
        return losses.MSELoss(model)
    if loss == "kl":
        # ListNet is the cross-entropy between softmax(teacher) and softmax(student): the KL divergence plus the
        # teacher's entropy, a constant, so it has the KL's gradients.
        return losses.ListNetLoss(model)
    raise ValueError(f"unknown distillation loss '{loss}'")


def student_base(
    student, keep_layers: tuple[int, ...] | None, teacher_dir: str | Path, teacher_description: str,
    workdir: Path, texts: list[str],
) -> tuple[Path, str, tuple[int, ...] | None]:
    """The student's starting weights: the teacher's (every other layer unless ``keep_layers``) or a spec's."""
    if student == "teacher":
        kept = drop_layers(teacher_dir, workdir / "student_base", keep_layers)
        return workdir / "student_base", f"teacher ({teacher_description}), layers {list(kept)}", kept
    resolved = resolve_model(student, workdir / "base", texts=texts)
    if keep_layers is None:
        return Path(resolved.name_or_path), resolved.description, None
    kept = drop_layers(resolved.name_or_path, workdir / "student_base", keep_layers)
    return workdir / "student_base", f"{resolved.description}, layers {list(kept)}", kept


def train_cross_encoder_student(
    teacher_scores: pd.DataFrame,
    params: CrossEncoderDistillationParams,
    output_dir: str | Path,
    teacher_dir: str | Path,
    teacher_description: str = "teacher",
) -> TrainResult:
    """Train a cross-encoder student on the teacher's scores (CrossEncoderTrainer) and save it to ``model/``.

    As in :func:`finetune.ranking.cross_encoder.train_cross_encoder`, batches are length-grouped
    (``params.length_grouped_batches``) and, on a CPU other than Intel's in fp32, the linear layers compute
    through oneDNN.
    """
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer

    from finetune.ranking.onednn import onednn_for_training, onednn_linears

    out = Path(output_dir)
    placement = resolve_placement(params.training.device, params.training.precision)
    texts = teacher_scores["query"].drop_duplicates().tolist() + teacher_scores["passage"].drop_duplicates().tolist()
    base, description, _ = student_base(params.student, params.keep_layers, teacher_dir, teacher_description, out,
                                        texts)
    trusted = getattr(params.student, "trust_remote_code", False)  # a spec's flag; "teacher" is our own save
    seed_before_building(params.training.seed)  # a student from a bi-encoder teacher gets a new classifier
    model = CrossEncoder(str(base), num_labels=1, max_length=params.training.max_length, device=placement.device,
                         **sentence_transformers_kwargs(trusted))
    dataset = cross_encoder_dataset(teacher_scores, params.loss, params.temperature, params.label_weight)
    plan = checkpoint_plan("cross_encoder_student", params.training.checkpoints, params, teacher_scores, base)
    sampler = (cross_encoder.length_grouped_sampler(dataset, model.tokenizer, params.training)
               if params.length_grouped_batches else None)
    trainer = CrossEncoderTrainer(
        model=model,
        args=cross_encoder.to_training_arguments(params.training, out / "trainer", placement, plan, sampler),
        train_dataset=dataset,
        loss=cross_encoder_loss(model, params.loss),
    )
    model_dir = out / "model"
    with onednn_linears(model, enabled=onednn_for_training(placement.device, placement.precision)):
        run = train_and_save(trainer, model, model_dir, plan, "train_cross_encoder_student")
    return TrainResult(model_dir=model_dir, log_history=run.history, num_parameters=count_parameters(model),
                       train_seconds=run.seconds, train_examples=len(dataset), base_model=description,
                       device=f"{placement.device}/{placement.precision}", resumed_from_step=run.resumed_from_step)


def rerank_with(
    model_dir: str | Path, architecture: str, data: RankingSet, first_stage: Run, depth: int, batch_size: int = 64,
    max_length: int | None = None, precision: InferencePrecision = "fp32",
) -> RerankResult:
    """Rerank the first stage's top ``depth`` with a cross- or dual encoder (throughput measured); ``precision``
    applies to a cross-encoder (a dual encoder encodes in fp32)."""
    if architecture == "cross_encoder":
        return cross_encoder.rerank(model_dir, data, first_stage, depth, batch_size, max_length=max_length,
                                    precision=precision)
    if architecture == "dual_encoder":
        return dual_encoder.rerank_dual(model_dir, data, first_stage, depth, batch_size, max_length=max_length)
    raise ValueError(f"unknown model architecture {architecture!r}; expected one of {ARCHITECTURES}")


@dataclass
class TeacherStudentComparison:
    """Teacher and student reranking the same candidates, measured in the same process.

    Attributes:
        comparison: ranx means and paired tests of ``student`` and ``teacher`` against the first stage.
        metrics: Flat ``test_<metric>`` (student), ``<baseline>_test_<metric>``, ``teacher_test_<metric>``,
            p-values against the first stage (``p_value_test_<metric>`` for the student,
            ``p_value_teacher_test_<metric>`` for the teacher), the student's paired test against the teacher
            (``p_value_test_<metric>_vs_teacher``), and ``student_teacher_ratio_test_<primary>``.
        stats: docs/s and parameter counts of both, and the student's speed-up.
        runs: ``student`` and ``teacher`` reranked runs.
    """

    comparison: RunComparison
    metrics: dict[str, float]
    stats: dict[str, float]
    runs: dict[str, Run]


def compare_teacher_student(
    teacher: tuple[str | Path, str, int],
    student: tuple[str | Path, str, int],
    data: RankingSet,
    first_stage: Run,
    baseline: str,
    evaluation: RankingEvalParams,
    max_length: int | None = None,
) -> TeacherStudentComparison:
    """Rerank ``data``'s first-stage candidates with teacher and student and compare both with the baseline.

    Args:
        teacher: (model directory, architecture, parameter count).
        student: The same for the student.
        data: Evaluation queries and judgments.
        first_stage: The candidates both rerank (and the baseline run).
        baseline: Name of the first-stage run (``bm25``).
        evaluation: Depth, metrics, primary metric, test, and how often to time both (``speed_repetitions``).
        max_length: Token limit for both models.
    """
    models = {"student": student, "teacher": teacher}

    def timed(name: str) -> RerankResult:
        path, arch, _ = models[name]
        return rerank_with(path, arch, data, first_stage, evaluation.rerank_depth, evaluation.batch_size, max_length,
                           evaluation.precision)

    results = {name: timed(name) for name in ("student", "teacher")}
    # Further repetitions only time the two models, alternating which goes first, so a change in background load
    # falls on both: docs/s are medians, the speed-up the median of the per-repetition ratios.
    speeds = {name: [result.docs_per_second] for name, result in results.items()}
    for repetition in range(1, evaluation.speed_repetitions):
        for name in ("teacher", "student") if repetition % 2 else ("student", "teacher"):
            speeds[name].append(timed(name).docs_per_second)
    comparison = compare_runs(
        data.qrels, {baseline: first_stage, "student": results["student"].run, "teacher": results["teacher"].run},
        metrics=list(evaluation.metrics), baseline=baseline, stat_test=evaluation.stat_test, alpha=evaluation.alpha,
        relevance_level=evaluation.relevance_level,
    )
    metrics = comparison_metrics(comparison, candidate="student", baseline=baseline)
    for metric in evaluation.metrics:
        metrics[metric_key(metric, "teacher")] = comparison.means["teacher"][metric]
        # The teacher against the first stage; the student against the teacher is ``p_value_test_<m>_vs_teacher``.
        metrics[f"p_value_{metric_key(metric, 'teacher')}"] = comparison.p_values["teacher"][metric]
    metrics.update(versus_metrics(comparison, "student", "teacher", evaluation.stat_test, evaluation.alpha))
    primary = evaluation.primary_metric
    teacher_value = comparison.means["teacher"][primary]
    metrics[f"student_teacher_ratio_{metric_key(primary)}"] = (
        comparison.means["student"][primary] / teacher_value if teacher_value > 0 else float("nan"))
    student_dps, teacher_dps = float(np.median(speeds["student"])), float(np.median(speeds["teacher"]))
    ratios = [s / t if t > 0 else float("nan") for s, t in zip(speeds["student"], speeds["teacher"], strict=True)]
    stats = {
        "docs_per_second": round(student_dps, 1),
        "teacher_docs_per_second": round(teacher_dps, 1),
        "speedup": round(float(np.median(ratios)), 3),
        "speedup_min": round(min(ratios), 3),
        "speedup_max": round(max(ratios), 3),
        "speed_repetitions": float(evaluation.speed_repetitions),
        "pairs_scored": float(results["student"].pairs_scored),
        "student_num_parameters": float(student[2]),
        "teacher_num_parameters": float(teacher[2]),
    }
    return TeacherStudentComparison(comparison, metrics, stats, {name: r.run for name, r in results.items()})
