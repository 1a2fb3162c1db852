from typing import Annotated

import pandas as pd
from zenml import step
from zenml.types import HTMLString

from finetune.params import GenerationEvalParams
from finetune.reports.common import with_promotion
from finetune.reports.generation import generation_report


@step
def build_generation_report(
    generation_metrics: dict[str, float],
    sample_generations: pd.DataFrame,
    evaluation: GenerationEvalParams,
    perplexity_metrics: dict[str, float] | None = None,
    mc_metrics: dict[str, float] | None = None,
    few_shot_metrics: dict[str, float] | None = None,
    few_shot_samples: pd.DataFrame | None = None,
    training_log: list[dict] | None = None,
    details: dict[str, str] | None = None,
    title: str = "Generation evaluation",
    promotion_decision: dict | None = None,
) -> Annotated[HTMLString, "report"]:
    """HTML report: metric table (fine-tuned vs few-shot), comparison chart, loss curve, sample generations."""
    metrics = {**(perplexity_metrics or {}), **generation_metrics, **(mc_metrics or {})}
    html = generation_report(
        title, metrics, sample_generations.to_dict("records"), few_shot_metrics,
        None if few_shot_samples is None else few_shot_samples.to_dict("records"),
        evaluation.few_shot_k, training_log, details,
    )
    return HTMLString(with_promotion(html, promotion_decision))
