"""train_dpo_model through ``.entrypoint()``: two DPO updates from a tiny GPT-2; the saved policy moved."""

import pandas as pd
import torch
from safetensors.torch import load_file

import steps.train.train_dpo_model as module
from finetune.models.causal import build_tiny_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import DpoParams, TinyGpt2Model
from steps.train.train_dpo_model import train_dpo_model

PAIRS = pd.DataFrame({"prompt": [f"say {w}:" for w in ("up", "down") * 6],
                      "chosen": [f" {w}" for w in ("up", "down") * 6],
                      "rejected": [f" {w}" for w in ("down", "up") * 6]})
TRAINING = {"max_steps": 2, "per_device_batch_size": 4, "learning_rate": 5e-3, "warmup_ratio": 0.0,
            "max_length": 16, "logging_steps": 1, "eval_steps": 2, "device": "cpu", "precision": "fp32"}


def test_the_policy_trains_against_the_starting_model(tmp_path, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    texts = (PAIRS["prompt"] + PAIRS["chosen"]).tolist()
    path = build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=32), tmp_path / "base", texts)
    base = ModelDirectory(path, "causal_lm", "tiny_gpt2 base", 1)
    params = DpoParams(model={"kind": "tiny_gpt2"}, method={"name": "full"}, beta=0.2, training=TRAINING)
    model_dir, log, stats = train_dpo_model.entrypoint(base, PAIRS.iloc[:8], PAIRS.iloc[8:], params)

    assert stats["method"] == "full" and stats["steps"] == 2 and stats["beta"] == 0.2 and stats["train_pairs"] == 8
    assert recorded == [stats]
    assert model_dir.kind == "causal_lm" and model_dir.base_model == "tiny_gpt2 base"
    assert model_dir.num_parameters == stats["total_parameters"]
    assert [e["step"] for e in log if "loss" in e] == [1, 2]
    before, after = load_file(path / "model.safetensors"), load_file(model_dir.path / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)
