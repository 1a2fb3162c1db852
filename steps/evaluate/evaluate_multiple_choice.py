from typing import Annotated

from zenml import step

from finetune.data.arc import from_arc_records
from finetune.device import resolve_device
from finetune.generation.evaluation import multiple_choice_metrics, score_multiple_choice
from finetune.models.causal import load_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams
from steps.metadata import record


@step
def evaluate_multiple_choice(
    model_dir: ModelDirectory, mc_test: list[dict], evaluation: GenerationEvalParams, split: str = "test"
) -> Annotated[dict[str, float], "mc_metrics"]:
    """ARC-style accuracy: the option with the highest log-likelihood after the question prompt (zero-shot).

    Metrics: ``<split>_mc_accuracy`` (raw sum) and ``<split>_mc_accuracy_norm`` (``length_normalization``).
    """
    model, tokenizer = load_causal_lm(model_dir.path, device=resolve_device(evaluation.device))
    scores = score_multiple_choice(
        model, tokenizer, from_arc_records(mc_test), evaluation.mc_prompt_template, batch_size=evaluation.batch_size
    )
    metrics = multiple_choice_metrics(scores, evaluation.length_normalization, split)
    record(metrics)
    return metrics
