"""Reward model (TRL RewardTrainer) and RL (TRL RLOO/GRPO) on tiny GPT-2 models, offline."""

import pandas as pd
import pytest
import torch

from finetune.generation.rlhf import (
    RewardScorer,
    load_reward_model,
    mean_reward,
    pairwise_accuracy,
    reward_dataset,
    reward_log,
    reward_token_ids,
    train_policy,
    train_reward_model,
)
from finetune.models.causal import build_tiny_causal_lm
from finetune.params import (
    LayerFreezingMethod,
    RewardEvalParams,
    RewardModelParams,
    RlParams,
    TinyGpt2Model,
    TrainingParams,
)


def _direction_pairs(n: int, seed: int) -> pd.DataFrame:
    """A learnable toy set: the prompt names a direction and the chosen answer repeats it.

    Half the prompts say "up", half "down"; chosen = the prompt's word, rejected = the other one. A reward model
    that ignores the prompt scores " up" the same in both halves, so it is right on exactly half the pairs.
    """
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word, other = rng.choice([("up", "down"), ("down", "up")])
        noise = " ".join(rng.choice(["go", "now", "then", "please", "quickly"]) for _ in range(rng.randint(0, 3)))
        rows.append({"prompt": f"{noise} say {word}:", "chosen": f" {word}", "rejected": f" {other}"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    texts = [f"{r['prompt']}{r['chosen']}{r['rejected']}" for r in _direction_pairs(200, 0).to_dict("records")]
    spec = TinyGpt2Model(hidden_size=32, num_layers=2, num_heads=2, vocab_size=300, max_position_embeddings=64)
    return build_tiny_causal_lm(spec, tmp_path_factory.mktemp("base"), texts)


def test_pairwise_accuracy_counts_strict_wins():
    """(3 > 1) yes, (0 > 2) no, (5 > 5) no (a tie is not a win): 1 of 3."""
    assert pairwise_accuracy([3.0, 0.0, 5.0], [1.0, 2.0, 5.0]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="2 chosen but 1 rejected"):
        pairwise_accuracy([1.0, 2.0], [0.0])


def test_reward_model_beats_chance_on_a_learnable_toy_set(tiny_base, tmp_path):
    train, test = _direction_pairs(240, 1), _direction_pairs(60, 2)
    params = RewardModelParams(training=TrainingParams(epochs=10, per_device_batch_size=16, learning_rate=3e-3,
                                                       warmup_ratio=0.0, logging_steps=5, max_length=32))
    untrained = RewardScorer(*load_reward_model(tiny_base))
    before = pairwise_accuracy(untrained.score(test["prompt"], test["chosen"]),
                               untrained.score(test["prompt"], test["rejected"]))
    result = train_reward_model(tiny_base, train, test, params, tmp_path)
    assert result.metrics["test_pairwise_accuracy"] >= 0.9 > before + 0.2
    assert result.metrics["test_reward_margin"] > 0
    low, high = result.metrics["test_pairwise_accuracy_low"], result.metrics["test_pairwise_accuracy_high"]
    assert low < result.metrics["test_pairwise_accuracy"] <= high <= 1.0
    # Every answer is one word (" up" / " down"): "prefer the longer answer" ties on every pair, which counts as
    # wrong, so the reward model is right alone on each pair it gets right: McNemar p = 2 × 0.5^k.
    assert result.metrics["test_longer_answer_accuracy"] == 0.0
    right = round(result.metrics["test_pairwise_accuracy"] * len(test))
    assert result.metrics["test_p_value_vs_longer_answer"] == pytest.approx(2 * 0.5 ** right)
    assert result.log_history[-1]["loss"] < result.log_history[0]["loss"]
    # The saved model scores as the trained one did: reloading loses nothing.
    reloaded = RewardScorer(*load_reward_model(result.model_dir))
    chosen = reloaded.score(test["prompt"], test["chosen"])
    rejected = reloaded.score(test["prompt"], test["rejected"])
    assert pairwise_accuracy(chosen, rejected) == result.metrics["test_pairwise_accuracy"]


def test_reward_model_with_frozen_blocks_trains_only_the_rest(tiny_base, tmp_path):
    from safetensors.torch import load_file

    train, test = _direction_pairs(128, 1), _direction_pairs(32, 2)
    params = RewardModelParams(freeze=LayerFreezingMethod(freeze_first_k=1),  # of the tiny model's 2 blocks
                               training=TrainingParams(epochs=3, per_device_batch_size=16, learning_rate=3e-3,
                                                       warmup_ratio=0.0, logging_steps=5, max_length=32))
    start, _ = load_reward_model(tiny_base)
    before = {name: p.detach().clone() for name, p in start.named_parameters()}
    result = train_reward_model(tiny_base, train, test, params, tmp_path)
    after = load_file(str(result.model_dir / "model.safetensors"))
    changed = {name for name, value in before.items() if not torch.equal(after[name], value)}
    assert changed, "nothing trained"
    # Block 0 and the embeddings stay exactly as loaded; the top block and the new score head move.
    assert not {n for n in changed if n.startswith("transformer.h.0.") or n.startswith(("transformer.wte",
                                                                                       "transformer.wpe"))}
    assert any(n.startswith("transformer.h.1.") for n in changed)
    assert "score.weight" in changed
    assert result.log_history[-1]["loss"] < result.log_history[0]["loss"]


def _count_up(prompts, completions, **kwargs):
    """Toy reward: how many times the completion says "up" (the policy can raise it by saying it more)."""
    return [float(c.count("up")) for c in completions]


@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_rl_raises_the_mean_reward_on_a_toy_reward(tiny_base, tmp_path, algorithm):
    prompts = _direction_pairs(64, 3)["prompt"].tolist()
    evaluation = RewardEvalParams(max_new_tokens=8, num_samples=4, max_prompts=16, seed=0)
    before = mean_reward(tiny_base, _count_up, prompts, evaluation)
    params = RlParams(algorithm=algorithm, num_generations=4, max_completion_length=8, beta=0.0,
                      training=TrainingParams(max_steps=40, per_device_batch_size=16, learning_rate=1e-2,
                                              warmup_ratio=0.0, logging_steps=10, max_length=32))
    result = train_policy(tiny_base, _count_up, prompts, params, tmp_path)
    after = mean_reward(result.model_dir, _count_up, prompts, evaluation)
    log = reward_log(result.log_history)
    assert [e["step"] for e in log] == [10, 20, 30, 40]
    # Measured on CPU: 0.08 → 4.19 "up"s per 8-token completion with RLOO, 0.08 → 3.34 with GRPO.
    assert before < 0.5 and after > 2.0, (before, after)


@pytest.fixture(scope="module")
def tiny_bert_start(tmp_path_factory):
    """A tiny BERT (its own WordPiece tokenizer) as the reward model's starting encoder (``reward.model``)."""
    from finetune.generation.rlhf import reward_base_directory
    from finetune.params import TinyBertModel

    pairs = _direction_pairs(200, 0)
    texts = [t for column in ("prompt", "chosen", "rejected") for t in pairs[column].tolist()]
    spec = TinyBertModel(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, vocab_size=200,
                         max_position_embeddings=64)
    path, description = reward_base_directory(spec, tmp_path_factory.mktemp("bert"), texts)
    assert description.startswith("tiny_bert")
    return path


@pytest.mark.parametrize("start", ["tiny_base", "tiny_bert_start"])
def test_reward_token_ids_cut_the_start_of_a_long_prompt_and_keep_the_answer(start, request):
    _, tokenizer = load_reward_model(request.getfixturevalue(start))
    answer = " up up down"
    [short] = reward_token_ids(tokenizer, [" say up:"], [answer], max_length=48)  # " say" as in the long one
    [long] = reward_token_ids(tokenizer, ["go now then please " * 20 + "say up:"], [answer], max_length=12)
    assert len(long) == 12 < len(tokenizer("go now then please " * 20)["input_ids"])
    tail = len(short) - (1 if short[0] in tokenizer.all_special_ids else 0)  # text tokens (+ EOS or [SEP])
    assert long[-tail:] == short[-tail:]  # the answer and the end of the prompt survive
    if short[0] in tokenizer.all_special_ids:  # [CLS] (BERT) stays first after the cut
        assert long[0] == short[0]
    assert tokenizer.truncation_side == "left"


def test_reward_dataset_keeps_every_pair_within_max_length(tiny_base):
    _, tokenizer = load_reward_model(tiny_base)
    pairs = _direction_pairs(20, 4)
    pairs.loc[:9, "prompt"] = "go now then please " * 30 + pairs.loc[:9, "prompt"]  # 10 pairs far over 16 tokens
    dataset = reward_dataset(tokenizer, pairs, max_length=16)
    assert len(dataset) == 20
    assert max(len(ids) for column in ("chosen_ids", "rejected_ids") for ids in dataset[column]) == 16


def test_reward_model_from_an_encoder_of_its_own(tiny_bert_start, tmp_path):
    """``reward.model`` set: a BERT sequence classifier with its own tokenizer learns the toy preference, and the
    saved model scores as the trained one did."""
    train, test = _direction_pairs(240, 1), _direction_pairs(60, 2)
    params = RewardModelParams(training=TrainingParams(epochs=10, per_device_batch_size=16, learning_rate=3e-3,
                                                       warmup_ratio=0.0, logging_steps=5, max_length=32))
    result = train_reward_model(tiny_bert_start, train, test, params, tmp_path)
    assert result.metrics["test_pairwise_accuracy"] >= 0.9
    assert result.log_history[-1]["loss"] < result.log_history[0]["loss"]
    model, tokenizer = load_reward_model(result.model_dir)
    assert model.config.model_type == "bert"
    reloaded = RewardScorer(model, tokenizer, max_length=32)
    accuracy = pairwise_accuracy(reloaded.score(test["prompt"], test["chosen"]),
                                 reloaded.score(test["prompt"], test["rejected"]))
    assert accuracy == result.metrics["test_pairwise_accuracy"]


def test_reward_and_rl_configs_do_not_recompute_activations(tmp_path):
    """TRL's RewardConfig, RLOOConfig and GRPOConfig default to gradient checkpointing (~20-30 % slower steps);
    ours train without it, as every other trainer here does unless asked."""
    from finetune.device import resolve_placement
    from finetune.generation.rlhf import to_reward_config, to_rl_config

    placement = resolve_placement("cpu", "fp32")
    assert to_reward_config(RewardModelParams(), tmp_path, placement).gradient_checkpointing is False
    for algorithm in ("rloo", "grpo"):
        config = to_rl_config(RlParams(algorithm=algorithm, training=TrainingParams(per_device_batch_size=4)),
                              tmp_path, placement)
        assert config.gradient_checkpointing is False


def test_keep_last_tokens_cuts_long_prompts_from_the_left(tiny_base):
    from finetune.generation.rlhf import keep_last_tokens

    _, tokenizer = load_reward_model(tiny_base)
    long = "go now then please " * 10 + "say up:"
    short = "say up:"
    kept = keep_last_tokens(tokenizer, [long, short], 4)
    assert kept[1] == short  # 3 tokens: unchanged
    assert long.endswith(kept[0]) and len(kept[0]) < len(long)
    assert tokenizer(kept[0], add_special_tokens=False)["input_ids"] == \
        tokenizer(long, add_special_tokens=False)["input_ids"][-4:]
    assert keep_last_tokens(tokenizer, [long], None) == [long]


def test_train_policy_trains_on_the_cut_prompts(tiny_base, tmp_path, monkeypatch):
    from finetune.generation import rlhf

    seen = []

    def spy(tokenizer, texts, max_tokens):
        seen.append(max_tokens)
        kept = keep(tokenizer, texts, max_tokens)
        seen.append(kept)
        return kept

    keep = rlhf.keep_last_tokens
    monkeypatch.setattr(rlhf, "keep_last_tokens", spy)
    prompts = ["go now then please " * 5 + "say up:"] * 8
    params = RlParams(num_generations=4, max_completion_length=2, beta=0.0, max_prompt_tokens=3,
                      training=TrainingParams(max_steps=1, per_device_batch_size=4, learning_rate=1e-3,
                                              warmup_ratio=0.0, logging_steps=1, max_length=32))
    rlhf.train_policy(tiny_base, _count_up, prompts, params, tmp_path)
    _, tokenizer = load_reward_model(tiny_base)
    assert seen[0] == 3 and len(seen[1]) == 8
    assert all(len(tokenizer(p, add_special_tokens=False)["input_ids"]) == 3 and prompts[0].endswith(p)
               for p in seen[1])
