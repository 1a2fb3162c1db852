"""train_sft_model_multi_gpu's body, called in this process (``unwrapped_entrypoint``, without ``accelerate
launch``; tests/steps/test_multi_gpu_steps.py covers the wrapper): it trains from the staged directory and refuses
QLoRA, which is single-GPU only."""

import pytest

import steps.train.train_sft_model_multi_gpu as module
from finetune.data.instructions import examples_frame
from finetune.models.causal import build_tiny_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import InstructionTokenization, SftParams, TinyGpt2Model
from steps.data.tokenize_instructions import tokenize_instructions
from steps.train.stage_sft_inputs import stage_sft_inputs
from steps.train.train_sft_model_multi_gpu import train_sft_model_multi_gpu

TEMPLATE = "Q: {prompt}\nA: "
TINY = {"kind": "tiny_gpt2", "max_position_embeddings": 64}


def _examples(n: int, offset: int = 0):
    return examples_frame((f"ex-{i}", [{"role": "user", "content": f"what is {i % 7} plus {i % 5}?"},
                                       {"role": "assistant", "content": f"{i % 7 + i % 5}"}])
                          for i in range(offset, offset + n))


@pytest.fixture
def staged(tmp_path):
    texts = [f"Q: what is {a} plus {b}?\nA: {a + b}" for a in range(7) for b in range(5)]
    path = build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=64), tmp_path / "base", texts)
    base = ModelDirectory(path, "causal_lm", "tiny staged base", 777)
    tokenized = tokenize_instructions.entrypoint(base, _examples(8), _examples(2, offset=8),
                                                 InstructionTokenization(template=TEMPLATE, max_length=32))
    return stage_sft_inputs.entrypoint(base, *tokenized)


def test_it_trains_from_the_staged_base_and_names_it(staged, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    sft = SftParams.model_validate({"model": TINY, "method": {"name": "lora", "r": 2}, "training": {
        "max_steps": 2, "per_device_batch_size": 4, "max_length": 32, "eval_steps": 2, "logging_steps": 1,
        "device": "cpu", "precision": "fp32"}})
    model_dir, log, stats = train_sft_model_multi_gpu.unwrapped_entrypoint(
        sft_inputs=staged, sft_json=sft.model_dump_json())
    assert stats["method"] == "lora" and stats["steps"] == 2 and "validation_loss" in stats
    assert model_dir.base_model == "tiny staged base" and model_dir.num_parameters == stats["total_parameters"]
    assert recorded[0]["base_model"] == "tiny staged base" and any("eval_loss" in e for e in log)


def test_qlora_is_refused_before_anything_loads(staged):
    sft = SftParams.model_validate({"model": TINY, "method": {"name": "qlora"}})
    with pytest.raises(ValueError, match="method: qlora is single-GPU only; run sft_training with a GPU config"):
        train_sft_model_multi_gpu.unwrapped_entrypoint(sft_inputs=staged, sft_json=sft.model_dump_json())
