"""Device and precision resolution, in one place.

Order of preference is cuda > mps > cpu. bf16 is used on GPUs that support it (Ampere and newer); everything
else trains in fp32, because fp16 without a loss scaler diverges on small models and CPUs gain nothing from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

DeviceName = Literal["auto", "cpu", "cuda", "mps"]
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class Placement:
    """Where and in which precision to run.

    Attributes:
        device: "cuda", "mps" or "cpu".
        precision: "fp32", "bf16" or "fp16".
    """

    device: str
    precision: str

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    @property
    def fp16(self) -> bool:
        return self.precision == "fp16"

    @property
    def use_cpu(self) -> bool:
        return self.device == "cpu"


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(preference: DeviceName = "auto") -> str:
    """Pick the device: an explicit choice must exist, ``auto`` takes cuda > mps > cpu.

    Raises:
        ValueError: The requested device is not available on this machine.
    """
    if preference == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA GPU on this machine")
    if preference == "mps" and not _mps_available():
        raise ValueError("device 'mps' was requested but the Apple MPS backend is not available here")
    return preference


def resolve_placement(device: DeviceName = "auto", precision: PrecisionName = "auto") -> Placement:
    """Resolve device and precision together, failing early on combinations that cannot work.

    Raises:
        ValueError: fp16/bf16 requested where the device cannot run it.
    """
    resolved = resolve_device(device)
    if precision == "auto":
        bf16_ok = resolved == "cuda" and torch.cuda.is_bf16_supported()
        return Placement(resolved, "bf16" if bf16_ok else "fp32")
    if precision == "fp16" and resolved != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA GPU; the resolved device is '{resolved}'")
    if precision == "bf16" and resolved == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision 'bf16' was requested but this GPU does not support bf16 (needs Ampere or newer)")
    if precision == "bf16" and resolved == "mps":
        raise ValueError("precision 'bf16' is not supported for training on the MPS backend; use fp32")
    return Placement(resolved, precision)


def require_cuda(feature: str) -> None:
    """Fail with a plain sentence when a CUDA-only feature (e.g. 4-bit QLoRA) is requested without a GPU."""
    if not torch.cuda.is_available():
        raise ValueError(f"{feature} needs a CUDA GPU, and torch sees none on this machine")
