"""cross_encoder_distillation from a registered teacher, chosen by model name and stage, on a throw-away store.

A tiny cross-encoder is trained and registered by cross_encoder_training first; the distillation run then loads
that version's ``model_dir`` artifact, scores the mined tuples once (a second run reuses ``teacher_scores``),
trains a student with every other layer and records the teacher in the student's model version.
"""

import json
import uuid

import pytest
import yaml

from finetune.data.demo import write_demo_msmarco

pytestmark = pytest.mark.slow

FAST = {"max_steps": 6, "per_device_batch_size": 8, "learning_rate": 1e-3, "max_length": 64, "logging_steps": 2,
        "device": "cpu", "precision": "fp32"}


def _write(tmp_path, name, config):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _common(files):
    source = {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}}
    return {
        "data": {"train": source, "eval_fraction": 0.25, "split_seed": 1},
        "retrieval": {"k": 12},
        "mining": {"negatives_per_positive": 2, "depth": 12, "max_positives_per_query": 1},
        "evaluation": {"rerank_depth": 12, "metrics": ["ndcg@10", "mrr@10"], "relevance_level": 2},
    }


def test_distill_from_a_registered_teacher_by_name_and_stage(tmp_path, zenml_client):
    from cli.config_check import validate_config
    from pipelines.ranking import cross_encoder_distillation, cross_encoder_training

    files = write_demo_msmarco(tmp_path / "data", num_queries=16, passages_per_query=12, seed=3)
    teacher_name, student_name = f"teacher_{uuid.uuid4().hex[:8]}", f"student_{uuid.uuid4().hex[:8]}"
    teacher_config = _write(tmp_path, "cross_encoder_training", {"model": {"name": teacher_name}, "parameters": {
        **_common(files),
        "cross_encoder": {"model": {"kind": "tiny_bert", "vocab_size": 300, "num_layers": 2}, "training": FAST},
    }})
    cross_encoder_training.with_options(config_path=str(teacher_config))()
    teacher = zenml_client.get_model_version(teacher_name, 1)
    stage = str(teacher.stage)  # production if it beat BM25, staging otherwise: either is a stage
    teacher_artifact = teacher.get_model_artifact("model_dir")

    config = _write(tmp_path, "cross_encoder_distillation", {"model": {"name": student_name}, "parameters": {
        **_common(files),
        "teacher": {"model": {"kind": "registered", "name": teacher_name, "version": stage}, "max_length": 64},
        "distillation": {"student": "teacher", "loss": "margin_mse", "training": FAST},
    }})
    assert validate_config(config) == []
    run = zenml_client.get_pipeline_run(cross_encoder_distillation.with_options(config_path=str(config))().id)
    assert str(run.status) == "completed"

    # Artifact lineage: the teacher version's model_dir is an input of the student's run.
    scored_with = run.steps["score_teacher"].inputs["teacher_model_dir"][0]
    assert scored_with.id == teacher_artifact.id
    # Metadata lineage: the student's model version names the teacher version it learned from.
    lineage = zenml_client.get_model_version(student_name, 1).run_metadata["teacher"]
    assert lineage["model"] == teacher_name and lineage["version_number"] == 1
    assert lineage["requested_version"] == stage and lineage["architecture"] == "cross_encoder"

    student = run.steps["distill_cross_encoder"].outputs["model_dir"][0].load()
    assert json.loads((student.path / "config.json").read_text())["num_hidden_layers"] == 1  # layers [0] of 2
    assert student.num_parameters < teacher_artifact.load().num_parameters
    metrics = run.steps["compare_teacher_student"].outputs["metrics"][0].load()
    stats = run.steps["compare_teacher_student"].outputs["rerank_stats"][0].load()
    assert {"test_ndcg@10", "teacher_test_ndcg@10", "bm25_test_ndcg@10"} <= set(metrics)
    # `python -m cli.show` gives the student's paired test against the teacher beside the one against BM25.
    from cli.show import summary

    row = next(line for line in summary("cross_encoder_distillation").splitlines() if line.startswith("test_ndcg@10"))
    assert row.split()[-2:] == [f"{metrics['teacher_test_ndcg@10']:.4f}",
                                f"{metrics['p_value_test_ndcg@10_vs_teacher']:.3g}"]
    assert stats["student_num_parameters"] == student.num_parameters and stats["teacher_docs_per_second"] > 0
    decision = run.steps["promote_model"].outputs["promotion_decision"][0].load()
    assert decision["promote"] == (metrics["test_ndcg@10"] > metrics["bm25_test_ndcg@10"])

    # A second run reuses the teacher's scores; lineage and promotion are written again.
    rerun = zenml_client.get_pipeline_run(cross_encoder_distillation.with_options(config_path=str(config))().id)
    statuses = {name: str(step.status) for name, step in rerun.steps.items()}
    assert statuses["score_teacher"] == "cached" and statuses["distill_cross_encoder"] == "cached"
    assert statuses["record_teacher"] == statuses["promote_model"] == "completed"
    assert zenml_client.get_model_version(student_name, 2).run_metadata["teacher"]["version_number"] == 1

    # bench.retime_distillation re-runs the comparison on the very models the run stored: the same quality, new
    # timings of both models.
    from bench.retime_distillation import retime

    again = retime(run)
    assert again["test_ndcg@10"]["retimed"] == again["test_ndcg@10"]["stored"] == round(metrics["test_ndcg@10"], 4)
    assert again["stored"]["speedup"] == stats["speedup"]
    assert again["retimed"]["docs_per_second"] > 0 and again["retimed"]["teacher_docs_per_second"] > 0
    assert again["retimed"]["speedup_min"] <= again["retimed"]["speedup"] <= again["retimed"]["speedup_max"]
