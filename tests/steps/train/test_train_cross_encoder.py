"""train_cross_encoder through ``.entrypoint()``: a tiny cross-encoder takes a few updates on mined toy pairs."""

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import steps.train.train_cross_encoder as module
from finetune.models.sources import build_tiny_bert
from finetune.params import CrossEncoderParams, MiningParams, TinyBertModel, TrainingParams
from finetune.ranking.cross_encoder import mine_hard_negatives
from steps.train.train_cross_encoder import train_cross_encoder

ORDER = ["20", "21", "10", "12", "14", "16", "11", "13", "15", "17", "18", "19"]
MODEL = TinyBertModel(vocab_size=200, seed=0)


@pytest.fixture
def toy_pairs(toy_ranking) -> pd.DataFrame:
    run = {q: {pid: float(len(ORDER) - i) for i, pid in enumerate(ORDER)} for q in toy_ranking.queries}
    return mine_hard_negatives(toy_ranking, run, MiningParams(negatives_per_positive=3, positive_min_grade=2))


def test_the_model_is_trained_saved_and_described(toy_pairs, tmp_path, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    params = CrossEncoderParams(model=MODEL, loss="bce", training=TrainingParams(
        max_steps=4, per_device_batch_size=8, learning_rate=3e-3, warmup_ratio=0.0, logging_steps=2, max_length=32,
        device="cpu", precision="fp32", seed=0))
    model_dir, log = train_cross_encoder.entrypoint(toy_pairs, params)

    assert [e["step"] for e in log if "loss" in e] == [2, 4]
    facts = recorded[0]
    assert facts["final_loss"] == log[-1]["loss"] and facts["device"] == "cpu/fp32"
    assert facts["train_examples"] == len(toy_pairs) == 16  # 4 queries × (1 positive + 3 negatives)
    assert model_dir.kind == "cross_encoder" and model_dir.num_parameters == facts["num_parameters"] > 0
    assert model_dir.base_model == facts["base_model"] and "tiny_bert" in model_dir.base_model

    # The saved weights moved away from the seeded starting model's.
    texts = toy_pairs["query"].drop_duplicates().tolist() + toy_pairs["passage"].drop_duplicates().tolist()
    start = load_file(build_tiny_bert(MODEL, tmp_path / "start", texts) / "model.safetensors")
    trained = load_file(model_dir.path / "model.safetensors")
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert trained[name].shape == start[name].shape and not torch.equal(trained[name], start[name])
