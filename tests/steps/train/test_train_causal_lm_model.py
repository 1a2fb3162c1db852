"""tokenize_text then train_causal_lm_model through ``.entrypoint()``: continued pre-training of a tiny GPT-2 for two
updates on the packed blocks."""

import pandas as pd
import torch
from safetensors.torch import load_file

import steps.train.train_causal_lm_model as module
from finetune.models.causal import build_tiny_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import CausalLmParams, TinyGpt2Model
from steps.data.tokenize_text import tokenize_text
from steps.train.train_causal_lm_model import train_causal_lm_model

TEXTS = [f"the number {a} comes before {a + 1} and after {a - 1}." for a in range(1, 40)]
TRAINING = {"max_steps": 2, "per_device_batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0,
            "logging_steps": 1, "eval_steps": 2, "device": "cpu", "precision": "fp32"}


def test_the_base_model_trains_and_keeps_its_description(tmp_path, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    path = build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=64), tmp_path / "base", TEXTS)
    base = ModelDirectory(path, "causal_lm", "tiny_gpt2 (hidden 32)", 1)
    params = CausalLmParams(model={"kind": "tiny_gpt2"}, method={"name": "full"}, training=TRAINING, block_size=16)
    tokenized = tokenize_text.entrypoint(base, pd.DataFrame({"text": TEXTS[:30]}), pd.DataFrame({"text": TEXTS[30:]}),
                                         params.tokenization())
    assert all(len(ids) == 16 for ids in tokenized[0].load()["input_ids"]) and tokenized[1].rows > 0
    model_dir, log, stats = train_causal_lm_model.entrypoint(base, *tokenized, params)

    assert stats["method"] == "full" and stats["steps"] == 2
    assert stats["trainable_parameters"] == stats["total_parameters"] == model_dir.num_parameters  # full: all train
    assert "validation_loss" in stats and any("eval_loss" in e for e in log)
    assert model_dir.kind == "causal_lm" and model_dir.base_model == "tiny_gpt2 (hidden 32)"
    assert recorded[0]["base_model"] == "tiny_gpt2 (hidden 32)" and "train" in recorded[0]["tokenization"]
    before, after = load_file(path / "model.safetensors"), load_file(model_dir.path / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)
