"""A trained model saved as a directory of safetensors weights, config and tokenizer files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ModelDirectory:
    """A model on disk, as produced by ``save_pretrained``.

    Attributes:
        path: Local directory with ``model.safetensors``, ``config.json`` and tokenizer files.
        kind: What loads it: ``cross_encoder`` (sentence-transformers CrossEncoder), ``causal_lm``, ...
        base_model: Where the starting weights came from (one line).
        num_parameters: Parameter count.
    """

    path: Path
    kind: str
    base_model: str = ""
    num_parameters: int = 0

    def files(self) -> list[str]:
        """Relative paths of all files, sorted."""
        return sorted(str(p.relative_to(self.path)) for p in Path(self.path).rglob("*") if p.is_file())

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in Path(self.path).rglob("*") if p.is_file())
