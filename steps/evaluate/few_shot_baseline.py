from typing import Annotated

import pandas as pd
from zenml import step

from finetune.data.arc import from_arc_records
from finetune.device import resolve_device
from finetune.generation.evaluation import evaluate_few_shot, prompts_and_references
from finetune.models.causal import load_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams
from finetune.promotion import item_key
from steps.metadata import record


@step
def few_shot_baseline(
    base_model_dir: ModelDirectory,
    train_examples: pd.DataFrame,
    test_examples: pd.DataFrame,
    evaluation: GenerationEvalParams,
    template: str,
    mc_train: list[dict] | None = None,
    mc_test: list[dict] | None = None,
    split: str = "test",
) -> tuple[
    Annotated[dict[str, float], "few_shot_metrics"],
    Annotated[pd.DataFrame, "few_shot_samples"],
    Annotated[dict[str, float], "few_shot_per_item_rougeL"],
]:
    """The base model, untrained, with ``few_shot_k`` solved train examples in every prompt: the same generation
    metrics (and multiple-choice accuracy when questions are given) as the fine-tuned model, named
    ``few_shot_<split>_<metric>``, and each test example's ROUGE-L keyed by its prompt as ``evaluate_generations``
    keys the fine-tuned model's (the promotion gate's paired test against this baseline).

    ``template``: ``InstructionDataParams.template``."""
    model, tokenizer = load_causal_lm(base_model_dir.path, device=resolve_device(evaluation.device))
    test = prompts_and_references(test_examples, template, tokenizer)
    metrics, rows, rouge_l = evaluate_few_shot(
        model, tokenizer,
        prompts_and_references(train_examples, template, tokenizer),
        test,
        evaluation,
        from_arc_records(mc_train or []), from_arc_records(mc_test or []), split,
    )
    record({**metrics, "few_shot_k": evaluation.few_shot_k})
    per_item = {item_key(prompt): value for prompt, value in zip(test[0], rouge_l, strict=False)}
    return metrics, pd.DataFrame(rows, columns=["prompt", "reference", "generated", "rougeL"]), per_item
