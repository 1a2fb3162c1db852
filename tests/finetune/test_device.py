import pytest
import torch

from finetune.device import require_cuda, resolve_device, resolve_placement


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_auto_on_cpu_machine_is_fp32_cpu():
    placement = resolve_placement("auto", "auto")
    assert (placement.device, placement.precision, placement.use_cpu) in {("cpu", "fp32", True), ("mps", "fp32", False)}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_cuda_only_features_fail_with_a_sentence():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        require_cuda("4-bit QLoRA")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_fp16_needs_cuda_when_resolved_on_cpu():
    with pytest.raises(ValueError, match="fp16"):
        resolve_placement("cpu", "fp16")


def test_explicit_cpu_fp32():
    placement = resolve_placement("cpu", "fp32")
    assert placement.device == "cpu" and not placement.bf16 and not placement.fp16


@pytest.mark.gpu
def test_cuda_auto_prefers_bf16_on_ampere_or_newer():
    placement = resolve_placement("auto", "auto")
    assert placement.device == "cuda"
    assert placement.bf16 == torch.cuda.is_bf16_supported()


@pytest.mark.parametrize(
    ("device", "capability", "expected"),
    [
        ("cuda", (8, 0), True),    # A100: first generation with TF32 tensor cores
        ("cuda", (9, 0), True),    # H100
        ("cuda", (8, 9), True),    # L4 / RTX 4090
        ("cuda", (7, 5), False),   # T4 (Turing): tensor cores, but no TF32
        ("cuda", (7, 0), False),   # V100
        ("cpu", None, False),
        ("mps", None, False),
        ("cpu", (9, 0), False),    # a capability only counts on CUDA
    ],
)
def test_tf32_only_on_ampere_or_newer_cuda(device, capability, expected):
    from finetune.device import tf32_supported

    assert tf32_supported(device, capability) is expected


def test_apply_tf32_switches_the_matmul_precision_only_when_allowed():
    from finetune.device import Placement, apply_tf32

    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (matmul.fp32_precision, conv.fp32_precision)
    try:
        apply_tf32(Placement("cpu", "fp32", tf32=False))
        assert (matmul.fp32_precision, conv.fp32_precision) == before
        apply_tf32(Placement("cuda", "bf16", tf32=True))
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
    finally:
        matmul.fp32_precision, conv.fp32_precision = before


def test_cpu_placement_never_enables_tf32():
    assert resolve_placement("cpu", "fp32").tf32 is False


@pytest.mark.gpu
def test_cuda_placement_enables_tf32_on_ampere_or_newer():
    placement = resolve_placement("cuda", "auto")
    assert placement.tf32 == (torch.cuda.get_device_capability() >= (8, 0))
    if placement.tf32:
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
