import tempfile
from dataclasses import asdict
from typing import Annotated

import pandas as pd
from pydantic import TypeAdapter
from zenml import step

from finetune.data.types import RankingSet, TrecRun
from finetune.models.directory import ModelDirectory
from finetune.models.sources import resolve_model
from finetune.params import DenseEvalParams, ModelSpec, RankingEvalParams
from finetune.ranking.dual_encoder import evaluate_dense
from steps.metadata import record


@step
def evaluate_dual_encoder(
    model_dir: ModelDirectory,
    eval_set: RankingSet,
    eval_first_stage_run: TrecRun,
    evaluation: RankingEvalParams,
    dense: DenseEvalParams,
    max_length: int,
    starting_model: dict | None = None,
    train_pairs: pd.DataFrame | None = None,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> tuple[
    Annotated[dict[str, float], "metrics"], Annotated[dict, "comparison"], Annotated[dict[str, float], "rerank_stats"]
]:
    """Dense retrieval over the whole corpus and reranking of the first stage, each tested against it (ranx).

    With ``starting_model`` (a model spec as a dict), the untrained starting model is evaluated the same way as the
    ``zero_shot`` baseline; ``train_pairs`` give a tiny model's tokenizer its texts, as in training."""
    start_dir = None
    if starting_model is not None:
        texts = [] if train_pairs is None else (
            train_pairs["query"].drop_duplicates().tolist() + train_pairs["passage"].drop_duplicates().tolist())
        spec = TypeAdapter(ModelSpec).validate_python(starting_model)
        start_dir = resolve_model(spec, tempfile.mkdtemp(prefix="start_"), texts=texts).name_or_path
    comparison, metrics, stats = evaluate_dense(model_dir.path, eval_set, eval_first_stage_run.scores,
                                                eval_first_stage_run.name, evaluation, dense, max_length, start_dir)
    record({**metrics, **stats})
    return metrics, asdict(comparison), stats
