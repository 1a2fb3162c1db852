"""A trained model saved as a directory of safetensors weights, config and tokenizer files, written whole or not
at all, and never with NaN/inf weights."""

from __future__ import annotations

import itertools
import math
import os
import shutil
from collections.abc import Callable
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


def check_finite_weights(model, model_dir: str | Path) -> None:
    """Raise before saving ``model`` to ``model_dir`` if any floating-point parameter or buffer holds NaN or inf.

    ``aminmax`` per tensor: NaN propagates into both ends and ±inf shows at one, without the full-size boolean mask
    ``isfinite`` would allocate (512 MiB for a 128k × 4096 embedding). Quantised (integer) weights are skipped.

    Raises:
        FloatingPointError: One line naming the first non-finite tensor and the directory.
    """
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        if not tensor.is_floating_point() or tensor.numel() == 0 or tensor.is_meta:
            continue
        low, high = (float(v) for v in tensor.detach().aminmax())
        if not (math.isfinite(low) and math.isfinite(high)):
            kind = "NaN" if math.isnan(low) or math.isnan(high) else "inf"
            raise FloatingPointError(f"refusing to save {model_dir}: weight {name} holds {kind} values (training "
                                     "diverged; lower learning_rate or use precision: fp32)")


def save_model_directory(model, model_dir: str | Path, save: Callable[[Path], object]) -> Path:
    """Check ``model``'s weights, ``save`` it into a hidden sibling folder, then rename that to ``model_dir``.

    A refused, failed or killed save leaves no ``model_dir`` behind for a later step to take for a model (a rename
    within one folder is atomic); an existing ``model_dir`` is replaced only once the new one is complete.

    Args:
        model: The model whose parameters and buffers are checked (``check_finite_weights``).
        model_dir: Where the model ends up.
        save: Writes the model (and tokenizer) into the folder it is given, e.g. ``model.save_pretrained``.

    Returns:
        ``model_dir`` as a ``Path``.

    Raises:
        FloatingPointError: A weight is NaN or inf (nothing is written).
    """
    target = Path(model_dir)
    check_finite_weights(model, target)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)  # left by an earlier attempt of this pid
    partial.mkdir(parents=True)
    try:
        save(partial)
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target
