"""Device and precision resolution, in one place.

Order of preference is cuda > mps > cpu. bf16 is used on GPUs that support it (Ampere and newer); everything
else trains in fp32, because fp16 without a loss scaler diverges on small models and CPUs gain nothing from it.
On the same GPUs, float32 matrix products and convolutions that remain (fp32 runs, layers autocast keeps in fp32)
use TF32 tensor cores: a 10-bit mantissa instead of 23, about 8x the fp32 throughput of an A100.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal

import torch

DeviceName = Literal["auto", "cpu", "cuda", "mps"]
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
InferencePrecision = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class Placement:
    """Where and in which precision to run.

    Attributes:
        device: "cuda", "mps" or "cpu".
        precision: "fp32", "bf16" or "fp16".
        tf32: float32 matmuls and convolutions may use TF32 tensor cores (CUDA, compute capability 8.0+).
    """

    device: str
    precision: str
    tf32: bool = False

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


def tf32_supported(device: str, capability: tuple[int, int] | None) -> bool:
    """Whether TF32 tensor cores exist: a CUDA device of compute capability 8.0 (Ampere, A100) or newer.

    Args:
        device: The resolved device name.
        capability: ``torch.cuda.get_device_capability()`` (major, minor), or None off CUDA.
    """
    return device == "cuda" and capability is not None and tuple(capability) >= (8, 0)


def apply_tf32(placement: Placement) -> None:
    """Let float32 matmuls and cuDNN convolutions run in TF32 when the placement allows it (process-wide).

    torch 2.9+ has per-backend ``fp32_precision`` switches and rejects mixing them with the legacy ``allow_tf32``
    flags, so the new switches are used where they exist.
    """
    if not placement.tf32:
        return
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def resolve_placement(device: DeviceName = "auto", precision: PrecisionName = "auto") -> Placement:
    """Resolve device and precision together, failing early on combinations that cannot work.

    On an Ampere or newer GPU the placement also enables TF32 for the remaining float32 work (``apply_tf32``).

    Raises:
        ValueError: fp16/bf16 requested where the device cannot run it.
    """
    placement = _resolve_placement(device, precision)
    apply_tf32(placement)
    return placement


def _resolve_placement(device: DeviceName, precision: PrecisionName) -> Placement:
    resolved = resolve_device(device)
    tf32 = tf32_supported(resolved, torch.cuda.get_device_capability() if resolved == "cuda" else None)
    if precision == "auto":
        bf16_ok = resolved == "cuda" and torch.cuda.is_bf16_supported()
        return Placement(resolved, "bf16" if bf16_ok else "fp32", tf32)
    if precision == "fp16" and resolved != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA GPU; the resolved device is '{resolved}'")
    if precision == "bf16" and resolved == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision 'bf16' was requested but this GPU does not support bf16 (needs Ampere or newer)")
    if precision == "bf16" and resolved == "mps":
        raise ValueError("precision 'bf16' is not supported for training on the MPS backend; use fp32")
    return Placement(resolved, precision, tf32)


def inference_autocast(device: str, precision: InferencePrecision = "fp32") -> AbstractContextManager:
    """The context a model scores in at ``precision``: nothing for fp32, else ``torch.autocast`` to bf16/fp16.

    Autocast leaves the weights alone (a caller's fp32 model stays fp32) and keeps the numerically touchy operations
    (softmax, layer norm, the loss functions) in fp32; opened once around all batches, it casts each weight once
    (its cast cache lives as long as the context). fp16 is refused off CUDA rather than emulated: CPUs without
    AVX512-FP16 run it slower than fp32, and without a GPU there is nothing to gain; bf16 runs on any CPU (oneDNN
    has bf16 kernels; on CPUs with AVX512-BF16 or AMX they are faster than fp32).

    Args:
        device: The resolved device (``cuda``, ``mps`` or ``cpu``).
        precision: ``fp32``, ``bf16`` or ``fp16``.

    Raises:
        ValueError: fp16 off CUDA/MPS, or bf16 on a GPU without bf16 (before Ampere); one line naming the key.
    """
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device == "cpu":
        raise ValueError("precision 'fp16' needs a GPU for inference and the resolved device is 'cpu'; use 'bf16' "
                         "(any CPU) or 'fp32'")
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision 'bf16' was requested but this GPU does not support bf16 (needs Ampere or newer); "
                         "use 'fp16' or 'fp32'")
    return torch.autocast(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def require_cuda(feature: str) -> None:
    """Fail with a plain sentence when a CUDA-only feature (e.g. 4-bit QLoRA) is requested without a GPU."""
    if not torch.cuda.is_available():
        raise ValueError(f"{feature} needs a CUDA GPU, and torch sees none on this machine")
