from typing import Annotated

from zenml import step

from finetune.data.types import RankingSet, TrecRun
from finetune.params import RankingEvalParams
from finetune.ranking.curriculum import compare_curricula
from steps.metadata import record


@step
def evaluate_curricula(
    eval_set: RankingSet,
    eval_first_stage_run: TrecRun,
    reranked_runs: list[TrecRun],
    arm_names: list[str],
    evaluation: RankingEvalParams,
    starting_point_run: TrecRun | None = None,
) -> tuple[Annotated[dict[str, float], "metrics"], Annotated[dict, "comparison"], Annotated[str, "best_arm"]]:
    """ranx metrics of every arm with a paired test against standard training; the best arm's gate metrics.

    ``reranked_runs[i]`` is the run of ``arm_names[i]``. ``metrics`` holds ``<arm>_test_<metric>``,
    ``p_value_<arm>_test_<metric>`` (against standard training) and the best arm's ``test_<metric>`` with its
    first-stage comparison, which the promotion gate reads; with ``starting_point_run`` (the untrained model,
    ``zero_shot``) also its means and the best arm's paired test against it.
    """
    if len(reranked_runs) != len(arm_names):
        raise ValueError(f"{len(reranked_runs)} runs for {len(arm_names)} arm names")
    trained = {name: run.scores for name, run in zip(arm_names, reranked_runs, strict=True)}
    metrics, comparison, best = compare_curricula(
        eval_set.qrels, (eval_first_stage_run.name, eval_first_stage_run.scores), trained, evaluation,
        None if starting_point_run is None else starting_point_run.scores)
    record({**metrics, "best_arm": best})
    return metrics, comparison, best
