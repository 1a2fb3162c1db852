"""Route a model's ``nn.Linear`` layers through oneDNN on CPU, for inference and training, with unchanged weights.

PyTorch's CPU ``nn.Linear`` calls MKL's sgemm. On AMD CPUs MKL takes its AVX2 code path even where the CPU has
AVX-512, while oneDNN (shipped in the same torch wheel) picks its kernels from the CPU's instruction set. On the
2-core AMD EPYC (Zen 5) benchmark machine a 3200×384 @ 384×1536 fp32 product ran at 96 GFLOP/s through MKL and
201 GFLOP/s through oneDNN on one thread (CPU time). The results are the same fp32 products summed in another
order (differences ~1e-6 relative).

:func:`onednn_linears` swaps the class of every plain ``nn.Linear`` of a model to :class:`OneDNNLinear` for
the duration of a ``with`` block. Parameters, state-dict keys and optimizers are untouched, so a trainer, a
``save_pretrained`` and a checkpoint see the same model.

On Intel CPUs MKL takes its AVX-512 paths, and training through oneDNN is slower: on a 2-core Intel Xeon with
AVX-512/AMX, one forward and backward step of all-MiniLM-L6-v2 as a cross-encoder on 80 pairs of 160 tokens took
4.6-4.9 s through MKL and 6.5-6.6 s through oneDNN (80 × 100 tokens: 2.4-2.6 s against 3.6-3.7 s), while scoring
was a tie (64 × 160 tokens: 1.34-1.35 s against 1.34-1.38 s). So trainers ask :func:`onednn_for_training`, which
keeps MKL on Intel CPUs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ W.T (+ bias)`` for a dense 2-D fp32 CPU ``x`` and a weight already in oneDNN's format.

    ``mkldnn._linear_pointwise`` (the kernel torch.compile emits for CPU linear layers) reads and writes dense
    tensors; ``aten.mkldnn_linear`` would need ``x.to_mkldnn()`` and ``.to_dense()`` copies, which took a third
    of the scoring time when measured.
    """
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")


def _mm_nt(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T (+ bias)`` for dense 2-D fp32 CPU tensors, computed by oneDNN."""
    return _linear(a, b.contiguous().to_mkldnn(), bias)


class _OneDNNLinearFunction(torch.autograd.Function):
    """``x @ W.T + b`` with forward and backward products through oneDNN (x is 2-D)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _mm_nt(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = _mm_nt(grad_out, weight.t()) if ctx.needs_input_grad[0] else None
        grad_w = _mm_nt(grad_out.t(), x.t()) if ctx.needs_input_grad[1] else None
        grad_b = grad_out.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def onednn_usable(tensor: torch.Tensor) -> bool:
    """Whether oneDNN can compute a linear layer on ``tensor``: a float32 CPU tensor and a torch built with it."""
    return (tensor.device.type == "cpu" and tensor.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


@functools.cache
def cpu_vendor(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's ``vendor_id`` (``GenuineIntel``, ``AuthenticAMD``...), or "" where the system does not say."""
    path = Path(cpuinfo)
    if not path.exists():
        return ""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return ""


def onednn_for_training(device: str, precision: str) -> bool:
    """Whether a trainer should compute its linear layers through oneDNN: CPU fp32 on a CPU that is not Intel's
    (where MKL's own kernels train faster; see the module docstring)."""
    return device == "cpu" and precision == "fp32" and cpu_vendor() != "GenuineIntel"


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose CPU fp32 products go through oneDNN; anything else falls back to ``nn.Linear``.

    Without gradients (scoring) the weights are converted to oneDNN's format once and reused until they change
    (their version counter moves), since converting a 384×1536 matrix on every call costs about as much as a
    quarter of the product itself.
    """

    def _onednn_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = (self.weight.data_ptr(), self.weight._version, None if self.bias is None else self.bias._version)
        cached = self.__dict__.get("_onednn_cache")
        if cached is None or cached[0] != key:
            bias = None if self.bias is None else self.bias.detach()
            cached = (key, self.weight.detach().contiguous().to_mkldnn(), bias)
            self.__dict__["_onednn_cache"] = cached
        return cached[1], cached[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (onednn_usable(x) and onednn_usable(self.weight)) or x.numel() == 0:
            return super().forward(x)
        flat = x.reshape(-1, x.shape[-1])
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            out = _OneDNNLinearFunction.apply(flat, self.weight, self.bias)
        else:
            weight, bias = self._onednn_weights()
            out = _linear(flat, weight, bias)
        return out.reshape(*x.shape[:-1], self.out_features)


@contextmanager
def onednn_linears(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block, every plain ``nn.Linear`` of ``model`` computes through oneDNN on CPU.

    Args:
        model: Any module; its parameters stay where they are (the swap changes only the layers' class).
        enabled: False makes the block a no-op (GPU runs, or to compare against the default kernels).

    Yields:
        The number of layers swapped.
    """
    swapped = [m for m in model.modules() if type(m) is nn.Linear] if enabled else []
    for module in swapped:
        module.__class__ = OneDNNLinear
    try:
        yield len(swapped)
    finally:
        for module in swapped:
            module.__class__ = nn.Linear
            module.__dict__.pop("_onednn_cache", None)
