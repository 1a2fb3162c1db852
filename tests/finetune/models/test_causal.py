import hashlib

import pytest
import torch

from finetune.models.causal import (
    build_tiny_causal_lm,
    load_causal_lm,
    lora_target_modules,
    resolve_causal_model,
    save_causal_lm,
)
from finetune.params import LocalModel, TinyGpt2Model, TinyLlamaModel

TEXTS = ["the quick brown fox jumps over the lazy dog", "question: what is two plus two? answer: four"] * 10


def _sha(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def _logits(model, tokenizer, text="the lazy fox answers four"):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


@pytest.mark.parametrize("spec_cls", [TinyGpt2Model, TinyLlamaModel])
def test_tiny_causal_lm_is_deterministic_per_seed(tmp_path, spec_cls):
    a = build_tiny_causal_lm(spec_cls(), tmp_path / "a", TEXTS)
    b = build_tiny_causal_lm(spec_cls(), tmp_path / "b", TEXTS)
    c = build_tiny_causal_lm(spec_cls(seed=1), tmp_path / "c", TEXTS)
    assert _sha(a) == _sha(b) != _sha(c)


def test_byte_level_tokenizer_round_trips_unseen_text(tmp_path):
    model, tok = load_causal_lm(build_tiny_causal_lm(TinyGpt2Model(), tmp_path / "m", TEXTS))
    text = "Zürich — naïve café ✓"  # none of these characters were in the training text
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.pad_token == "<|pad|>" and tok.pad_token_id != tok.eos_token_id
    assert model.config.vocab_size == len(tok) and not model.training
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|user|>\nhi<|endoftext|>\n<|assistant|>\n"


@pytest.mark.parametrize("spec_cls", [TinyGpt2Model, TinyLlamaModel])
def test_load_plain_directory_gives_the_same_logits(tmp_path, spec_cls):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_causal_lm(spec_cls(), tmp_path / "m", TEXTS)
    reference = AutoModelForCausalLM.from_pretrained(path).eval()
    model, tok = load_causal_lm(path)
    assert torch.equal(_logits(model, tok), _logits(reference, AutoTokenizer.from_pretrained(path)))


def test_prompt_tuning_adapter_is_saved_with_its_base_and_reloads(tmp_path):
    from peft import PromptTuningConfig, get_peft_model

    base_dir = build_tiny_causal_lm(TinyGpt2Model(), tmp_path / "base", TEXTS)
    base, tok = load_causal_lm(base_dir)
    peft_model = get_peft_model(base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    with torch.no_grad():  # move the virtual tokens away from their random init so the reload is observable
        peft_model.prompt_encoder["default"].embedding.weight.add_(1.0)
    peft_model.eval()
    expected = _logits(peft_model, tok)
    out = save_causal_lm(peft_model, tok, tmp_path / "trained")
    assert (out / "adapter_config.json").is_file() and (out / "base" / "config.json").is_file()
    model, tok2 = load_causal_lm(out)
    assert type(model).__name__.startswith("PeftModel")
    assert torch.allclose(_logits(model, tok2), expected, atol=1e-6)
    plain, _ = load_causal_lm(base_dir)
    plain_logits = _logits(plain, tok)
    # PEFT prepends the 4 virtual tokens to the output positions too: callers slice them off.
    assert expected.shape[1] == plain_logits.shape[1] + 4
    assert not torch.allclose(plain_logits, expected[:, 4:], atol=1e-3)


@pytest.mark.parametrize("spec_cls", [TinyGpt2Model, TinyLlamaModel])
def test_lora_is_saved_merged_and_logits_agree(tmp_path, spec_cls):
    from peft import LoraConfig, get_peft_model

    base, tok = load_causal_lm(build_tiny_causal_lm(spec_cls(), tmp_path / "base", TEXTS))
    targets = lora_target_modules(base.config.model_type)
    peft_model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=targets,
                                                 fan_in_fan_out=base.config.model_type == "gpt2"))
    with torch.no_grad():  # LoRA's B starts at zero; give it weights so the merge changes something
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.eval()
    unmerged = _logits(peft_model, tok)
    out = save_causal_lm(peft_model, tok, tmp_path / "trained")
    assert not (out / "adapter_config.json").exists()
    merged, _ = load_causal_lm(out)
    assert type(merged).__name__ in {"GPT2LMHeadModel", "LlamaForCausalLM"}
    assert torch.allclose(_logits(merged, tok), unmerged, atol=1e-5)
    base_only, _ = load_causal_lm(tmp_path / "base")
    assert not torch.allclose(_logits(base_only, tok), unmerged, atol=1e-3)


def test_lora_targets_per_architecture():
    assert lora_target_modules("gpt2") == ["c_attn"]
    assert lora_target_modules("llama") == lora_target_modules("mistral") == ["q_proj", "k_proj", "v_proj", "o_proj"]
    with pytest.raises(ValueError, match="model_type 'bert'.*target_modules"):
        lora_target_modules("bert")


def test_resolve_and_load_errors(tmp_path):
    with pytest.raises(ValueError, match="needs texts"):
        resolve_causal_model(TinyLlamaModel(), tmp_path)
    with pytest.raises(ValueError, match="no config.json"):
        resolve_causal_model(LocalModel(path=tmp_path), tmp_path)
    with pytest.raises(ValueError, match="not a causal LM directory"):
        load_causal_lm(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="adapter without its base model"):
        load_causal_lm(tmp_path)
    tiny = resolve_causal_model(TinyLlamaModel(), tmp_path / "w", texts=TEXTS)
    assert tiny.name_or_path.endswith("tiny_llama") and "layers=2" in tiny.description
