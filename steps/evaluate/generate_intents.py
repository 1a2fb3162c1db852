from typing import Annotated

import pandas as pd
from zenml import step

from finetune.device import resolve_device
from finetune.generation.evaluation import generation_metrics, rouge_scores, sample_table
from finetune.generation.rag import generate_http, generate_local
from finetune.models.directory import ModelDirectory
from finetune.params import HttpGenerator, RagParams
from finetune.promotion import item_key
from steps.metadata import record


def _api_key(generator: HttpGenerator) -> str | None:
    # The key is read here, at run time, and only handed to the function that sends it.
    if generator.api_key_secret is None:
        from finetune.generation.rag import api_key_from_env

        return api_key_from_env(generator)
    from zenml.client import Client

    values = Client().get_secret(generator.api_key_secret).secret_values
    if "api_key" not in values:
        raise ValueError(f"generator.api_key_secret: secret {generator.api_key_secret} has no 'api_key' value")
    return values["api_key"]


@step
def generate_intents(
    test_examples: pd.DataFrame,
    retrieval_metrics: dict[str, float],
    rag: RagParams,
    model_dir: ModelDirectory | None = None,
    prefix: str = "",
) -> tuple[
    Annotated[dict[str, float], "metrics"],
    Annotated[pd.DataFrame, "sample_generations"],
    Annotated[dict[str, float], "per_item_rougeL"],
]:
    """Generate every test query's intent (the fine-tuned local model, or the HTTP endpoint) from its prompt;
    ROUGE-1/2/L and BLEU against the reference intents, with the retrieval recall, in ``metrics``; each query's
    ROUGE-L keyed by its prompt in ``per_item_rougeL`` (for the promotion gate's paired test).

    ``prefix`` names a baseline's metrics (``untuned_`` for the generator before fine-tuning, given as
    ``model_dir``): its generation metrics only, without the retrieval recall it shares with the candidate."""
    prompts, references = test_examples["prompt"].tolist(), test_examples["response"].tolist()
    generator = rag.generator
    if isinstance(generator, HttpGenerator):
        predictions = generate_http(prompts, generator, _api_key(generator), rag.max_new_tokens)
    else:
        if model_dir is None:
            raise ValueError("a local generator needs its trained model_dir")
        predictions = generate_local(model_dir.path, prompts, generator.template, rag.max_new_tokens, rag.batch_size,
                                     resolve_device(rag.device))
    generated = {f"{prefix}{k}": v for k, v in generation_metrics(predictions, references, "test").items()}
    metrics = generated if prefix else {**retrieval_metrics, **generated}
    record(metrics)
    rows = sample_table(prompts, references, predictions, rag.num_samples)
    rouge_l = rouge_scores(predictions, references, ("rougeL",))["rougeL"]
    per_item = {item_key(prompt): float(value) for prompt, value in zip(prompts, rouge_l, strict=True)}
    return metrics, pd.DataFrame(rows, columns=["prompt", "reference", "generated", "rougeL"]), per_item
