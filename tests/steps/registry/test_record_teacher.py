"""record_teacher through ``.entrypoint()``: the student's version records which teacher it learned from.

For a registered teacher the version comes from the registry link of the very artifact the step received, not
from the stage now, so the record stays true after production moves on. The step runs in a stub step context on
the throw-away store (tests/steps/registry/conftest.py).
"""

from pathlib import Path

from zenml import link_artifact_to_model, save_artifact
from zenml.enums import ModelStages

import steps.registry.record_teacher as module
from finetune.models.directory import ModelDirectory
from finetune.params import RegisteredModel, TeacherParams, TinyBertModel
from steps.registry.record_teacher import record_teacher

TEACHER_DIR = ModelDirectory(Path("/nowhere/teacher"), "cross_encoder", "tiny_bert (hidden 32, 2 layers)", 1234)


def _metadata(client, version) -> dict:
    return client.get_model_version(model_version_name_or_number_or_id=version.id).run_metadata


def test_a_teacher_built_from_a_spec_is_named_by_its_directory(step_context, model_name, zenml_client):
    context, recorded = step_context(module, model_name)
    lineage = record_teacher.entrypoint(TEACHER_DIR, TeacherParams(model=TinyBertModel()))
    assert lineage == {"architecture": "cross_encoder", "base_model": "tiny_bert (hidden 32, 2 layers)",
                       "num_parameters": 1234, "model": "tiny_bert (hidden 32, 2 layers)"}
    assert recorded == [{"teacher": lineage}]
    assert _metadata(zenml_client, context.model_version)["teacher"] == lineage


def test_a_registered_teacher_is_named_by_the_version_its_artifact_came_from(step_context, model_name,
                                                                             zenml_client):
    """The teacher's model_dir was produced by version t1; t2 is in production by the time the student records
    it; the artifact is also linked to the student's own version, which is not a teacher version."""
    teacher = f"{model_name}_teacher"
    zenml_client.create_model(teacher)
    used = zenml_client.create_model_version(teacher, "t1")
    artifact = save_artifact({"stands_in_for": "the teacher's model_dir"}, name=f"{teacher}_model_dir")
    link_artifact_to_model(artifact, used.to_model_class())
    zenml_client.create_model_version(teacher, "t2").set_stage(ModelStages.PRODUCTION)

    context, recorded = step_context(module, model_name, inputs={"teacher_model_dir": [artifact]})
    link_artifact_to_model(artifact, context.model_version.to_model_class())
    lineage = record_teacher.entrypoint(TEACHER_DIR, TeacherParams(model=RegisteredModel(name=teacher)))
    assert lineage == {"architecture": "cross_encoder", "base_model": "tiny_bert (hidden 32, 2 layers)",
                       "num_parameters": 1234, "model": teacher, "requested_version": "production",
                       "artifact_version_id": str(artifact.id), "version": "t1", "version_number": 1}
    assert recorded == [{"teacher": lineage}]
    assert _metadata(zenml_client, context.model_version)["teacher"] == lineage


def test_an_unlinked_artifact_records_the_request_without_a_version(step_context, model_name):
    teacher = f"{model_name}_teacher"
    artifact = save_artifact({"stands_in_for": "a model_dir saved by hand"}, name=f"{teacher}_unlinked")
    step_context(module, model_name, inputs={"teacher_model_dir": [artifact]})
    lineage = record_teacher.entrypoint(TEACHER_DIR, TeacherParams(model=RegisteredModel(name=teacher,
                                                                                          version="staging")))
    assert lineage["model"] == teacher and lineage["requested_version"] == "staging"
    assert "version" not in lineage and "version_number" not in lineage


def test_without_a_model_the_lineage_is_only_returned_and_recorded(step_context):
    _, recorded = step_context(module)
    lineage = record_teacher.entrypoint(TEACHER_DIR, TeacherParams(model=TinyBertModel()))
    assert recorded == [{"teacher": lineage}] and lineage["num_parameters"] == 1234
