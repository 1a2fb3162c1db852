from typing import Annotated

import pandas as pd
from zenml import step

from finetune.device import resolve_device
from finetune.generation.evaluation import evaluation_texts, perplexity
from finetune.models.causal import load_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams
from steps.metadata import record


@step
def evaluate_perplexity(
    model_dir: ModelDirectory,
    eval_data: pd.DataFrame,
    evaluation: GenerationEvalParams,
    template: str | None = None,
    split: str = "test",
) -> tuple[Annotated[dict[str, float], "perplexity_metrics"], Annotated[dict[str, float], "per_item_perplexity"]]:
    """Token-weighted perplexity of held-out text (a ``text`` column, or prompt + completion rendered with
    ``template``, ``InstructionDataParams.template``; None for a text table).

    Metrics: ``<split>_perplexity``, ``<split>_nll`` (mean nats per token), ``<split>_perplexity_tokens``.
    ``per_item_perplexity``: each scored window's perplexity keyed by its tokens, for the promotion gate.
    """
    model, tokenizer = load_causal_lm(model_dir.path, device=resolve_device(evaluation.device))
    texts = evaluation_texts(eval_data, template, tokenizer)
    result = perplexity(
        model, texts, tokenizer, evaluation.perplexity_block_size, evaluation.perplexity_stride, evaluation.batch_size
    )
    metrics = {
        f"{split}_perplexity": result.perplexity,
        f"{split}_nll": result.mean_nll,
        f"{split}_perplexity_tokens": float(result.num_tokens),
    }
    record(metrics)
    return metrics, result.window_perplexity
