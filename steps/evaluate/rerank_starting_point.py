import tempfile
from typing import Annotated

import pandas as pd
from pydantic import TypeAdapter
from zenml import step

from finetune.data.types import RankingSet, TrecRun
from finetune.params import ModelSpec, RankingEvalParams
from finetune.ranking.cross_encoder import rerank_starting_point as rerank
from finetune.ranking.evaluation import STARTING_POINT
from steps.metadata import record


@step
def rerank_starting_point(
    model: dict,
    train_pairs: pd.DataFrame,
    eval_set: RankingSet,
    eval_first_stage_run: TrecRun,
    evaluation: RankingEvalParams,
    max_length: int,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> tuple[Annotated[TrecRun, "starting_point_run"], Annotated[dict[str, float], "starting_point_stats"]]:
    """The model the pipeline starts from, untrained, reranking the same candidates (a bi-encoder zero-shot
    unless it already is a cross-encoder): the "did fine-tuning help?" baseline. ``model`` is the model spec as a
    dict; ``train_pairs`` supply the texts a tiny model's tokenizer is trained on, as in training."""
    spec = TypeAdapter(ModelSpec).validate_python(model)
    texts = train_pairs["query"].drop_duplicates().tolist() + train_pairs["passage"].drop_duplicates().tolist()
    result, architecture = rerank(spec, eval_set, eval_first_stage_run.scores, tempfile.mkdtemp(prefix="start_"),
                                  texts, evaluation.rerank_depth, evaluation.batch_size, max_length,
                                  evaluation.precision)
    stats = {"pairs_scored": float(result.pairs_scored), "seconds": round(result.seconds, 3),
             "docs_per_second": round(result.docs_per_second, 1)}
    record({**stats, "architecture": architecture})
    return TrecRun(STARTING_POINT, result.run), stats
