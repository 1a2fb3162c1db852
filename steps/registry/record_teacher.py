from typing import Annotated

from zenml import get_step_context, step
from zenml.client import Client

from finetune.models.directory import ModelDirectory
from finetune.params import RegisteredModel, TeacherParams
from steps.metadata import record


@step(enable_cache=False)
def record_teacher(
    teacher_model_dir: ModelDirectory, teacher: TeacherParams
) -> Annotated[dict, "teacher_lineage"]:
    """Write which teacher the student learns from into the student's model version metadata.

    Never cached: a cached step would not write metadata onto the new run's model version. For a registered
    teacher the model name and version number come from the registry link of the very artifact this step
    received, so the record names the version that was used even if the stage has moved on since.
    """
    lineage = {"architecture": teacher_model_dir.kind, "base_model": teacher_model_dir.base_model,
               "num_parameters": teacher_model_dir.num_parameters}
    context = get_step_context()
    if isinstance(teacher.model, RegisteredModel):
        artifact = context.inputs["teacher_model_dir"][0]
        client = Client()
        links = client.list_model_version_artifact_links(artifact_version_id=artifact.id, size=10).items
        lineage.update({"model": teacher.model.name, "requested_version": teacher.model.version,
                        "artifact_version_id": str(artifact.id)})
        versions = [v for v in (client.get_model_version(teacher.model.name, link.model_version) for link in links)
                    if v.model.name == teacher.model.name]
        if versions:
            lineage.update({"version": versions[0].name, "version_number": versions[0].number})
    else:
        lineage["model"] = teacher_model_dir.base_model
    record({"teacher": lineage})
    if context.model_version is not None:
        context.model.log_metadata({"teacher": lineage})
    return lineage
