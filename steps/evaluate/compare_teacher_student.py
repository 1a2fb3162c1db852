from dataclasses import asdict
from typing import Annotated

from zenml import step

from finetune.data.types import RankingSet, TrecRun
from finetune.models.directory import ModelDirectory
from finetune.params import RankingEvalParams
from finetune.ranking.distillation import compare_teacher_student as compare
from steps.metadata import record


@step
def compare_teacher_student(
    teacher_model_dir: ModelDirectory,
    model_dir: ModelDirectory,
    eval_set: RankingSet,
    eval_first_stage_run: TrecRun,
    evaluation: RankingEvalParams,
    max_length: int,
) -> tuple[
    Annotated[dict[str, float], "metrics"], Annotated[dict, "comparison"], Annotated[dict[str, float], "rerank_stats"]
]:
    """Teacher and student rerank the same held-out candidates in one step: quality, docs/s, parameter counts."""
    result = compare(
        (teacher_model_dir.path, teacher_model_dir.kind, teacher_model_dir.num_parameters),
        (model_dir.path, model_dir.kind, model_dir.num_parameters),
        eval_set, eval_first_stage_run.scores, eval_first_stage_run.name, evaluation, max_length,
    )
    record({**result.metrics, **result.stats})
    return result.metrics, asdict(result.comparison), result.stats
