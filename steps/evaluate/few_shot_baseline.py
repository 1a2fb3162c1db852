from typing import Annotated

import pandas as pd
from zenml import step

from finetune.data.arc import from_arc_records
from finetune.device import resolve_device
from finetune.generation.evaluation import evaluate_few_shot, prompts_and_references
from finetune.models.causal import load_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams
from steps.metadata import record


@step
def few_shot_baseline(
    base_model_dir: ModelDirectory,
    train_examples: pd.DataFrame,
    test_examples: pd.DataFrame,
    evaluation: GenerationEvalParams,
    mc_train: list[dict] | None = None,
    mc_test: list[dict] | None = None,
    template: str = "### Instruction:\n{prompt}\n\n### Response:\n",
    split: str = "test",
) -> tuple[Annotated[dict[str, float], "few_shot_metrics"], Annotated[pd.DataFrame, "few_shot_samples"]]:
    """The base model, untrained, with ``few_shot_k`` solved train examples in every prompt: the same generation
    metrics (and multiple-choice accuracy when questions are given) as the fine-tuned model, named
    ``few_shot_<split>_<metric>``."""
    model, tokenizer = load_causal_lm(base_model_dir.path, device=resolve_device(evaluation.device))
    metrics, rows = evaluate_few_shot(
        model, tokenizer,
        prompts_and_references(train_examples, template, tokenizer),
        prompts_and_references(test_examples, template, tokenizer),
        evaluation,
        from_arc_records(mc_train or []), from_arc_records(mc_test or []), split,
    )
    record({**metrics, "few_shot_k": evaluation.few_shot_k})
    return metrics, pd.DataFrame(rows, columns=["prompt", "reference", "generated", "rougeL"])
