from typing import Annotated

from zenml import get_step_context, step


@step(enable_cache=False)
def log_model_metrics(
    metrics: dict[str, float], baseline_metrics: dict[str, float], training_stats: dict
) -> Annotated[dict[str, float], "model_metrics"]:
    """Attach the held-out metrics, those of the starting point and the training measurements to the model version.

    Used by the pipelines without a promotion gate: causal-LM training (perplexity before/after: lower is better,
    which the higher-is-better gate of ``finetune.registry`` does not compare), RLHF (mean reward before/after),
    LM distillation and DPO. The version stays unstaged for review. Never cached, so a re-run still records on its
    own model version.
    """
    logged = {**baseline_metrics, **metrics,
              **{k: float(v) for k, v in training_stats.items() if isinstance(v, int | float)}}
    context = get_step_context()
    if context.model_version is not None:
        context.model.log_metadata(logged)
    return logged
