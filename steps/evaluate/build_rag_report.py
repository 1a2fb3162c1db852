from typing import Annotated

import pandas as pd
from zenml import step
from zenml.types import HTMLString

from finetune.generation.rlhf_rag_reports import rag_report
from finetune.reports import with_promotion


@step
def build_rag_report(
    metrics: dict[str, float], sample_generations: pd.DataFrame, promotion_decision: dict | None = None
) -> Annotated[HTMLString, "report"]:
    """HTML report: retrieval recall, ROUGE/BLEU of the intents and sample intents, worst ROUGE-L first."""
    return HTMLString(with_promotion(rag_report(metrics, sample_generations.to_dict("records")), promotion_decision))
