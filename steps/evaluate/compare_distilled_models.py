from typing import Annotated

import pandas as pd
from zenml import step

from finetune.device import resolve_device
from finetune.generation.distillation import compare_models
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams
from steps.metadata import record


@step
def compare_distilled_models(
    teacher_dir: ModelDirectory,
    student_dir: ModelDirectory,
    baseline_dir: ModelDirectory,
    test_documents: pd.DataFrame,
    evaluation: GenerationEvalParams,
    block_size: int,
) -> tuple[Annotated[list[dict], "model_comparison"], Annotated[dict[str, float], "distillation_metrics"]]:
    """Teacher, distilled student and the student trained without a teacher on the same held-out blocks:
    perplexity, parameter count and scoring tokens/s.

    Metrics: ``test_perplexity`` (the distilled student), ``teacher_test_perplexity``,
    ``no_kd_test_perplexity``, ``<role>_parameters`` / ``<role>_tokens_per_second``, and the distilled student
    against the student without a teacher window by window: ``kd_vs_no_kd_log_ppl_diff`` (mean per-window
    difference of log-perplexity; negative: distillation helped) and ``kd_vs_no_kd_p`` (paired t-test).
    """
    dirs = {"teacher": teacher_dir.path, "student": student_dir.path, "no_kd": baseline_dir.path}
    rows = compare_models(dirs, test_documents["text"].tolist(), evaluation.perplexity_block_size or block_size,
                          evaluation.batch_size, resolve_device(evaluation.device), paired_against="no_kd")
    metrics: dict[str, float] = {}
    for row in rows:
        prefix = "" if row["model"] == "student" else f"{row['model']}_"
        metrics.update({f"{prefix}test_perplexity": row["test_perplexity"], f"{prefix}test_nll": row["test_nll"],
                        f"{row['model']}_parameters": float(row["parameters"]),
                        f"{row['model']}_tokens_per_second": row["tokens_per_second"]})
        if row["model"] == "student":   # window-by-window against the student trained without a teacher
            metrics.update({"kd_vs_no_kd_log_ppl_diff": row["Δ log-ppl vs no_kd"], "kd_vs_no_kd_p": row["vs no_kd p"]})
    record(metrics)
    return rows, metrics
