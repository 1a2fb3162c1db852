"""dual_encoder_distillation with a model-spec teacher (a tiny bi-encoder) on a throw-away ZenML store."""

import uuid

import pytest
import yaml

from finetune.data.demo import write_demo_msmarco

pytestmark = pytest.mark.slow


def test_spec_teacher_to_half_depth_student(tmp_path, zenml_client):
    from cli.config_check import validate_config
    from pipelines.ranking import dual_encoder_distillation

    files = write_demo_msmarco(tmp_path / "data", num_queries=16, passages_per_query=12, seed=3)
    source = {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}}
    model_name = f"dual_student_{uuid.uuid4().hex[:8]}"
    config = {"model": {"name": model_name}, "parameters": {
        "data": {"train": source, "eval_fraction": 0.25, "split_seed": 1},
        "retrieval": {"k": 12},
        "mining": {"negatives_per_positive": 2, "depth": 12, "max_positives_per_query": 1},
        "teacher": {"model": {"kind": "tiny_bert", "vocab_size": 300, "num_layers": 4},
                    "architecture": "dual_encoder", "max_length": 64},
        "distillation": {"from_teacher": True, "student": {
            "loss": "kl", "temperature": 2.0,
            "training": {"max_steps": 4, "per_device_batch_size": 8, "learning_rate": 1e-3, "max_length": 64,
                         "logging_steps": 2, "device": "cpu", "precision": "fp32"}}},
        "evaluation": {"rerank_depth": 12, "metrics": ["ndcg@10"], "relevance_level": 2},
    }}
    path = tmp_path / "dual_encoder_distillation.yaml"
    path.write_text(yaml.safe_dump(config))
    assert validate_config(path) == []

    run = zenml_client.get_pipeline_run(dual_encoder_distillation.with_options(config_path=str(path))().id)
    assert str(run.status) == "completed"
    teacher = run.steps["load_teacher_model"].outputs["teacher_model_dir"][0].load()
    student = run.steps["distill_dual_encoder"].outputs["model_dir"][0].load()
    assert teacher.kind == student.kind == "dual_encoder"
    assert student.base_model.endswith("layers [0, 2]") and student.num_parameters < teacher.num_parameters
    scores = run.steps["score_teacher"].outputs["teacher_scores"][0].load()
    assert scores["teacher_score"].between(-1.0, 1.0).all()  # cosine similarities of the tiny bi-encoder
    stats = run.steps["compare_teacher_student"].outputs["rerank_stats"][0].load()
    assert stats["teacher_num_parameters"] == teacher.num_parameters
    lineage = zenml_client.get_model_version(model_name, 1).run_metadata["teacher"]
    assert lineage["model"] == teacher.base_model and lineage["architecture"] == "dual_encoder"


def test_embedding_mse_with_a_cross_encoder_teacher_spec_is_refused_before_any_step():
    from finetune.params import DualEncoderDistillationParams, TeacherParams
    from pipelines.ranking import embedding_needs_dual_teacher

    distillation = DualEncoderDistillationParams(student={"loss": "embedding_mse"})
    with pytest.raises(ValueError, match="teacher.architecture is cross_encoder"):
        embedding_needs_dual_teacher(TeacherParams(architecture="cross_encoder"), distillation)
    embedding_needs_dual_teacher(TeacherParams(architecture="dual_encoder"), distillation)
    registered = TeacherParams(model={"kind": "registered", "name": "reranker"}, architecture="cross_encoder")
    embedding_needs_dual_teacher(registered, distillation)  # its architecture is known only at run time


@pytest.mark.parametrize("pipeline_name", ["cross_encoder_distillation", "dual_encoder_distillation"])
def test_a_teacher_ensemble_is_refused_by_the_distillation_pipelines_before_any_step(
        pipeline_name, tmp_path, zenml_client):
    """The distillation pipelines compare the student with its teacher, one model; an ensemble's fused scores would
    make that comparison about another teacher than the one the student learned."""
    import pipelines.ranking as ranking

    runs_before = zenml_client.list_pipeline_runs(size=1).total
    parameters = {
        "data": {"train": {"kind": "msmarco_files", "collection": str(tmp_path / "c.tsv"),
                           "queries": str(tmp_path / "q.tsv"), "qrels": str(tmp_path / "r.txt")}},
        "teacher": {"ensemble": [{"model": {"kind": "tiny_llama"}, "weight": 0.3}]},
    }
    with pytest.raises(ValueError, match=f"teacher.ensemble: {pipeline_name} compares the student"):
        getattr(ranking, pipeline_name).with_options(parameters=parameters)()
    assert zenml_client.list_pipeline_runs(size=1).total == runs_before
