"""Time a distillation run's teacher and student again, side by side, from the models the run stored.

    python -m bench.retime_distillation cross_encoder_distillation [--seeds 3]

The docs/s ratio a ``compare_teacher_student`` step logs is only as good as the machine was quiet while it ran.
When another job shared the cores, this re-runs that step's function on the very artifacts it read (teacher and
student model directories, held-out set, first-stage run, evaluation parameters) for the latest run of each of the
most recent training seeds (as ``bench.ranking_msmarco`` picks them), and prints the stored and the new docs/s,
speed-up and its range, together with the student's quality, which must come out the same as stored.
Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json

from bench.perf import machine
from bench.ranking_msmarco import latest_per_seed, training_seed


def retime(run) -> dict:
    """Re-run the run's teacher/student comparison; its stored and new speed figures and the student's nDCG@10."""
    from finetune.params import RankingEvalParams
    from finetune.ranking.distillation import compare_teacher_student

    step = run.steps["compare_teacher_student"]
    inputs = {name: artifacts[0].load() for name, artifacts in step.inputs.items()}
    evaluation = RankingEvalParams(**step.config.parameters["evaluation"])
    max_length = step.config.parameters["max_length"]
    teacher, student = inputs["teacher_model_dir"], inputs["model_dir"]
    first_stage = inputs["eval_first_stage_run"]
    result = compare_teacher_student(
        (teacher.path, teacher.kind, teacher.num_parameters), (student.path, student.kind, student.num_parameters),
        inputs["eval_set"], first_stage.scores, first_stage.name, evaluation, max_length,
    )
    stored = step.outputs["rerank_stats"][0].load()
    primary = f"test_{evaluation.primary_metric}"
    stored_quality = step.outputs["metrics"][0].load()[primary]
    keys = ("docs_per_second", "teacher_docs_per_second", "speedup", "speedup_min", "speedup_max")
    return {
        "run": run.name,
        "seed": training_seed(run.config.parameters or {}),
        "stored": {key: stored[key] for key in keys},
        "retimed": {key: result.stats[key] for key in keys},
        primary: {"stored": round(stored_quality, 4), "retimed": round(result.metrics[primary], 4)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", choices=["cross_encoder_distillation", "dual_encoder_distillation"])
    parser.add_argument("--seeds", type=int, default=3, help="how many of the most recent training seeds")
    args = parser.parse_args(argv)
    runs = latest_per_seed(args.pipeline, args.seeds)
    if not runs:
        raise SystemExit(f"no completed {args.pipeline} run of an MS MARCO recipe in this ZenML store")
    print(f"machine: {machine()}")
    for run in runs:
        print(json.dumps(retime(run)), flush=True)


if __name__ == "__main__":
    main()
