from typing import Annotated

import pandas as pd
from zenml import step
from zenml.types import HTMLString

from finetune.reports.common import with_promotion
from finetune.reports.rlhf_rag import rag_report


@step
def build_rag_report(
    metrics: dict[str, float], sample_generations: pd.DataFrame, promotion_decision: dict | None = None,
    baseline_metrics: dict[str, float] | None = None,
) -> Annotated[HTMLString, "report"]:
    """HTML report: retrieval recall, ROUGE/BLEU of the intents (and of the untuned generator's, ``baseline_metrics``)
    and sample intents, worst ROUGE-L first."""
    return HTMLString(with_promotion(rag_report(metrics, sample_generations.to_dict("records"), baseline_metrics),
                                     promotion_decision))
