from typing import Annotated

import pandas as pd
from zenml import step

from finetune.device import resolve_device
from finetune.generation.evaluation import evaluate_generation_per_example, prompts_and_references
from finetune.models.causal import load_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams
from finetune.promotion import item_key
from steps.metadata import record


@step
def evaluate_generations(
    model_dir: ModelDirectory,
    test_examples: pd.DataFrame,
    evaluation: GenerationEvalParams,
    template: str,
    split: str = "test",
) -> tuple[
    Annotated[dict[str, float], "generation_metrics"],
    Annotated[pd.DataFrame, "sample_generations"],
    Annotated[dict[str, float], "per_item_rougeL"],
]:
    """Greedy responses to the held-out prompts: ROUGE-1/2/L, BLEU and a table of samples, worst ROUGE-L first;
    ``per_item_rougeL`` holds each example's ROUGE-L keyed by its prompt, for the promotion gate's paired test.

    ``test_examples``: raw examples (rendered here with ``template`` and the model's tokenizer) or rendered ones
    (``prompt`` / ``reference`` columns).
    """
    model, tokenizer = load_causal_lm(model_dir.path, device=resolve_device(evaluation.device))
    prompts, references = prompts_and_references(test_examples, template, tokenizer)
    metrics, rows, rouge_l = evaluate_generation_per_example(model, tokenizer, prompts, references, evaluation, split)
    record(metrics)
    per_item = {item_key(prompt): value for prompt, value in zip(prompts, rouge_l, strict=False)}
    return metrics, pd.DataFrame(rows, columns=["prompt", "reference", "generated", "rougeL"]), per_item
