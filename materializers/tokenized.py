"""Store a tokenized split as its ``save_to_disk`` Arrow files, read back memory-mapped, with an HTML page of its
counts, length histogram and truncation rate for the dashboard."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from finetune.data.tokenized import TokenizedDataset, read_tokenized
from finetune.reports.tokenized import tokenized_dataset_html

FOLDER = "dataset"


class TokenizedDatasetMaterializer(BaseMaterializer):
    """Copies a :class:`TokenizedDataset` folder file by file into ``<uri>/dataset``.

    Loading memory-maps the Arrow files where they are when the artifact store is a local folder (the default
    stack): nothing is copied or read into RAM up front, which is what makes a cached tokenize step cheap for the
    training step that reads it. A remote store's files are first copied to a local temporary folder.
    """

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (TokenizedDataset,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: TokenizedDataset) -> None:
        fileio.makedirs(os.path.join(self.uri, FOLDER))
        for file in sorted(Path(data.path).iterdir()):
            if file.is_file():
                fileio.copy(str(file), os.path.join(self.uri, FOLDER, file.name), overwrite=True)

    def load(self, data_type: type[Any]) -> TokenizedDataset:
        source = os.path.join(self.uri, FOLDER)
        if os.path.isdir(source):  # a local artifact store: memory-map in place
            return read_tokenized(source)
        with self.get_temporary_directory(delete_at_exit=False) as local:
            for name in fileio.listdir(source):
                name = name.decode() if isinstance(name, bytes) else str(name)
                fileio.copy(os.path.join(source, name), os.path.join(local, name), overwrite=True)
            return read_tokenized(local)

    def extract_metadata(self, data: TokenizedDataset) -> dict[str, Any]:
        stats = data.stats
        return {key: stats[key] for key in ("kind", "split", "tokenizer", "max_length", "examples", "rows", "tokens",
                                            "loss_tokens", "truncated", "truncation_rate")} | {
            "mean_length": stats["lengths"].get("mean", 0.0), "p95_length": stats["lengths"].get("p95", 0)}

    def save_visualizations(self, data: TokenizedDataset) -> dict[str, VisualizationType]:
        path = os.path.join(self.uri, "tokenized.html")
        with fileio.open(path, "wb") as f:
            f.write(tokenized_dataset_html(data.stats).encode("utf-8"))
        return {path: VisualizationType.HTML}
