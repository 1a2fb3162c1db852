import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.models.directory import ModelDirectory
from finetune.params import RegisteredModel, TeacherParams
from finetune.ranking.distillation import save_encoder
from steps.metadata import record


@step
def load_teacher_model(
    teacher: TeacherParams,
    train_pairs: pd.DataFrame,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> Annotated[ModelDirectory, ArtifactConfig(name="teacher_model_dir", artifact_type=ArtifactType.MODEL)]:
    """Materialise a teacher given as a model spec (hub id, local path, package, tiny BERT) as a model directory.

    A registered teacher needs no step: the pipeline passes that version's ``model_dir`` artifact directly.
    ``train_pairs`` supplies the text a ``tiny_bert`` teacher's tokenizer is trained on.
    """
    if isinstance(teacher.model, RegisteredModel):
        raise ValueError("teacher.model: a registered teacher is loaded by the pipeline, not by this step")
    texts = train_pairs["query"].drop_duplicates().tolist() + train_pairs["passage"].drop_duplicates().tolist()
    workdir = Path(tempfile.mkdtemp(prefix="teacher_"))
    path, description, parameters = save_encoder(teacher.model, teacher.architecture, workdir / "model", texts)
    record({"teacher": description, "num_parameters": parameters})
    return ModelDirectory(path, teacher.architecture, description, parameters)
