"""train_rl_policy through ``.entrypoint()``: GRPO against a reward model for two updates, on the distinct
prompts of the preference pairs."""

import pandas as pd

import steps.train.train_rl_policy as module
from finetune.generation.rlhf import reward_log
from finetune.models.causal import build_tiny_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import RlhfParams, TinyGpt2Model
from steps.train.train_rl_policy import train_rl_policy

PAIRS = pd.DataFrame({"prompt": [f"say {w}:" for w in ("up", "down") * 4],
                      "chosen": [f" {w}" for w in ("up", "down") * 4],
                      "rejected": [f" {w}" for w in ("down", "up") * 4]})


def test_the_policy_is_trained_against_the_reward_model(tmp_path, monkeypatch):
    algorithm = "grpo"  # not the default: the configured algorithm is the one recorded
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    texts = (PAIRS["prompt"] + PAIRS["chosen"]).tolist()
    path = build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=32), tmp_path / "base", texts)
    base = ModelDirectory(path, "causal_lm", "tiny policy", 1234)
    # A causal-LM directory loads as a reward model with a fresh one-logit head: enough to reward something.
    reward = ModelDirectory(path, "reward_model", "tiny reward", 1)
    rlhf = RlhfParams(model={"kind": "tiny_gpt2"}, rl={
        "algorithm": algorithm, "num_generations": 2, "max_completion_length": 4, "beta": 0.0,
        "training": {"max_steps": 2, "per_device_batch_size": 4, "learning_rate": 1e-3, "warmup_ratio": 0.0,
                     "logging_steps": 1, "max_length": 16, "device": "cpu", "precision": "fp32"}},
        reward={"training": {"max_length": 16}})
    model_dir, log = train_rl_policy.entrypoint(base, reward, PAIRS, rlhf)

    assert recorded[0]["algorithm"] == algorithm
    assert recorded[0]["train_rewards"] == reward_log(log) and [e["step"] for e in reward_log(log)] == [1, 2]
    assert model_dir.kind == "causal_lm" and model_dir.base_model == "tiny policy"
    assert model_dir.num_parameters == 1234 and (model_dir.path / "config.json").is_file()
