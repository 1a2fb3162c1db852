from typing import Annotated

from zenml import get_step_context, step


@step(enable_cache=False)
def log_model_metrics(
    perplexity_metrics: dict[str, float], base_perplexity: dict[str, float], training_stats: dict
) -> Annotated[dict[str, float], "model_metrics"]:
    """Attach held-out perplexity before/after and the training measurements to this run's model version.

    No promotion gate: continued pre-training is judged by perplexity (lower is better), which the gate of
    ``finetune.registry`` (higher is better) does not compare; the version stays unstaged for review.
    Never cached, so a re-run still records on its own model version.
    """
    metrics = {**base_perplexity, **perplexity_metrics,
               **{k: float(v) for k, v in training_stats.items() if isinstance(v, int | float)}}
    context = get_step_context()
    if context.model_version is not None:
        context.model.log_metadata(metrics)
    return metrics
