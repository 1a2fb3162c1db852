"""Store a model directory file by file, so the artifact store holds plain safetensors, not a pickle or tarball."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from finetune.models.directory import ModelDirectory
from finetune.models.sources import check_safetensors

META = "model_directory.json"


class ModelDirectoryMaterializer(BaseMaterializer):
    """Copies every file of a :class:`ModelDirectory` into the artifact URI and back into a local folder."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ModelDirectory,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def save(self, data: ModelDirectory) -> None:
        for rel in data.files():
            target = os.path.join(self.uri, "model", rel)
            fileio.makedirs(os.path.dirname(target))
            fileio.copy(str(Path(data.path) / rel), target, overwrite=True)
        meta = {"kind": data.kind, "base_model": data.base_model, "num_parameters": data.num_parameters}
        with fileio.open(os.path.join(self.uri, META), "w") as f:
            f.write(json.dumps(meta))

    def load(self, data_type: type[Any]) -> ModelDirectory:
        with fileio.open(os.path.join(self.uri, META), "r") as f:
            meta = json.loads(f.read())
        with self.get_temporary_directory(delete_at_exit=False) as local:
            source = os.path.join(self.uri, "model")
            for root, _, files in fileio.walk(source):
                root = root.decode() if isinstance(root, bytes) else str(root)
                for name in files:
                    name = name.decode() if isinstance(name, bytes) else str(name)
                    rel = os.path.relpath(os.path.join(root, name), source)
                    os.makedirs(os.path.dirname(os.path.join(local, rel)), exist_ok=True)
                    fileio.copy(os.path.join(root, name), os.path.join(local, rel), overwrite=True)
            check_safetensors(local)  # a damaged artifact is named by its file, not by a loader's bare error
            return ModelDirectory(path=Path(local), **meta)

    def extract_metadata(self, data: ModelDirectory) -> dict[str, Any]:
        return {
            "kind": data.kind,
            "base_model": data.base_model,
            "num_parameters": data.num_parameters,
            "size_mb": round(data.size_bytes() / 2**20, 2),
            "files": ", ".join(data.files()),
        }
