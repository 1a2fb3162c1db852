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
