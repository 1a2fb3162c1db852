"""Every method trains what it should and nothing else; the gradual-unfreezing schedule; PEFT save/load."""

import pytest
import torch

from finetune.data.instructions import load_instruction_data
from finetune.generation.methods import groups_unfrozen_at, transformer_blocks, unfreezing_groups
from finetune.generation.training import run_training, sft_setup
from finetune.models.causal import load_causal_lm
from finetune.params import DemoInstructions, InstructionDataParams, SftParams

PEFT = ["lora", "adalora", "prefix_tuning", "p_tuning", "prompt_tuning", "multitask_prompt_tuning"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = InstructionDataParams(source=DemoInstructions(output_dir=tmp_path_factory.mktemp("d"), num_examples=40),
                                 validation_fraction=0.1, test_fraction=0.0)
    train, validation, _ = load_instruction_data(data)
    return train, validation, data.template


def _setup(demo, tmp_path, method, model="tiny_gpt2", steps=3, **training):
    train, validation, template = demo
    params = SftParams(model={"kind": model, "num_layers": 4}, method=method,
                       training={"max_steps": steps, "per_device_batch_size": 4, "learning_rate": 1e-2,
                                 "warmup_ratio": 0.0, "max_length": 64, "logging_steps": 1, "eval_steps": 2,
                                 "device": "cpu", "precision": "fp32", **training})
    return sft_setup(train, validation, template, params, tmp_path)


def _snapshot(model):
    return {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}


def _changed(before, model):
    return {n for n, p in model.named_parameters() if not torch.equal(before[n][0], p.detach())}


def _train(setup):
    """Run training; return the result and the names of parameters that changed, taken when training ends
    (saving merges LoRA into the weights afterwards)."""
    from transformers import TrainerCallback

    before = _snapshot(setup.trainer.model)
    seen = {}

    class Capture(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            seen["changed"] = _changed(before, model)

    setup.trainer.add_callback(Capture())
    return run_training(setup), seen["changed"]


@pytest.mark.parametrize("model", ["tiny_gpt2", "tiny_llama"])
@pytest.mark.parametrize("name", ["full", *PEFT])
def test_trainable_parameters_change_and_frozen_ones_do_not(demo, tmp_path, model, name):
    setup = _setup(demo, tmp_path, {"name": name}, model)
    before = _snapshot(setup.trainer.model)
    trainable = {n for n, (_, grad) in before.items() if grad}
    assert trainable and (name == "full") == (trainable == set(before))
    num_trainable = sum(setup.trainer.model.get_parameter(n).numel() for n in trainable)
    result, changed = _train(setup)
    # AdaLoRA's rank allocator writes its frozen rank counters (``ranknum``) as it prunes: bookkeeping, not training.
    assert {n for n in changed if ".ranknum." not in n} == trainable
    if name in ("lora", "adalora"):
        assert all("lora_" in n for n in trainable)
    if name in ("prefix_tuning", "p_tuning", "prompt_tuning", "multitask_prompt_tuning"):
        assert all(n.startswith("prompt_encoder.") for n in trainable)
        assert (result.model_dir / "adapter_config.json").is_file()
    reloaded, tok = load_causal_lm(result.model_dir)  # saved merged (LoRA family) or adapter + base: loads alone
    with torch.no_grad():
        reloaded(**tok("What is 2 plus 2?", return_tensors="pt"))
    assert result.stats["trainable_parameters"] == num_trainable


@pytest.mark.parametrize("model", ["tiny_gpt2", "tiny_llama"])
def test_layer_freezing_first_blocks_embeddings_and_patterns(demo, tmp_path, model):
    method = {"name": "layer_freezing", "freeze_first_k": 2, "freeze_embeddings": True,
              "freeze_patterns": [r"\.3\.mlp\."]}
    setup = _setup(demo, tmp_path, method, model)
    model_ = setup.trainer.model
    prefix, blocks = transformer_blocks(model_)
    before = _snapshot(model_)
    frozen = {n for n, (_, grad) in before.items() if not grad}
    expected = {n for n in before if n.startswith((f"{prefix}.0.", f"{prefix}.1.")) or ".3.mlp." in n}
    expected |= {n for n, p in model_.named_parameters()
                 if any(p is e.weight for e in model_.modules() if isinstance(e, torch.nn.Embedding))}
    assert frozen == expected and len(blocks) == 4
    assert _train(setup)[1] == set(before) - frozen


def test_layer_freezing_rejects_impossible_requests(demo, tmp_path):
    with pytest.raises(ValueError, match="freeze_first_k 9 exceeds the model's 4 blocks"):
        _setup(demo, tmp_path, {"name": "layer_freezing", "freeze_first_k": 9})
    with pytest.raises(ValueError, match=r"freeze_patterns \['nothing_like_this'\] match no parameter"):
        _setup(demo, tmp_path, {"name": "layer_freezing", "freeze_patterns": ["nothing_like_this"]})
    # GPT-2 ties its LM head to the frozen embeddings: all 4 blocks frozen would leave only the final norm.
    with pytest.raises(ValueError, match=r"leaves only \['transformer.ln_f.weight', 'transformer.ln_f.bias'\]"):
        _setup(demo, tmp_path, {"name": "layer_freezing", "freeze_first_k": 4})


def test_unfreezing_groups_order_head_top_down_embeddings_last(demo, tmp_path):
    setup = _setup(demo, tmp_path / "l", {"name": "gradual_unfreezing", "blocks_per_group": 2}, "tiny_llama")
    groups = unfreezing_groups(setup.trainer.model, 2)
    assert groups[0] == ["model.norm.weight", "lm_head.weight"]
    assert {n.split(".")[2] for n in groups[1]} == {"2", "3"} and {n.split(".")[2] for n in groups[2]} == {"0", "1"}
    assert groups[3] == ["model.embed_tokens.weight"]
    # GPT-2 ties the LM head to the token embeddings: the shared tensor trains with the head from step 0.
    gpt2 = _setup(demo, tmp_path / "g", {"name": "gradual_unfreezing"}).trainer.model
    groups = unfreezing_groups(gpt2, 1)
    assert "transformer.wte.weight" in groups[0] and groups[-1] == ["transformer.wpe.weight"] and len(groups) == 6


def test_schedule_arithmetic():
    """Every 5 steps one more of 4 groups: steps 0-4 → 1, 5-9 → 2, 10-14 → 3, 15+ → 4 (capped)."""
    assert [groups_unfrozen_at(s, 5, 4) for s in (0, 4, 5, 9, 10, 15, 99)] == [1, 1, 2, 2, 3, 4, 4]


def test_gradual_unfreezing_unfreezes_the_right_blocks_at_the_right_steps(demo, tmp_path):
    """4 blocks, one group every 2 steps, 7 steps: head at 0, block 3 at 2, block 2 at 4, block 1 at 6.

    Block 0 (due at step 8) and the position embeddings (step 10) never train.
    """
    method = {"name": "gradual_unfreezing", "unfreeze_every_steps": 2, "lr_decay": 2.0}
    setup = _setup(demo, tmp_path, method, steps=7, eval_steps=100)
    before = _snapshot(setup.trainer.model)
    assert {n for n, (_, grad) in before.items() if grad} == {"transformer.wte.weight", "transformer.ln_f.weight",
                                                             "transformer.ln_f.bias"}
    result, changed = _train(setup)
    assert result.unfreezing_history == [(0, 1), (2, 2), (4, 3), (6, 4)]
    blocks = {int(n.split(".")[2]) for n in changed if n.startswith("transformer.h.")}
    assert blocks == {1, 2, 3}
    assert not {n for n in changed if n.startswith("transformer.h.0.")} and "transformer.wpe.weight" not in changed
    # Discriminative learning rates: group g trains at lr / 2**g (the scheduler scales all groups alike).
    lrs = {g["name"]: g["initial_lr"] for g in setup.trainer.optimizer.param_groups}
    assert lrs["group0"] == pytest.approx(1e-2) and lrs["group2"] == pytest.approx(1e-2 / 4)
    assert lrs["group5"] == pytest.approx(1e-2 / 32)  # the position embeddings, last of 6 groups


def test_qlora_without_cuda_fails_before_any_model_loads(demo, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"^QLoRA \(4-bit NF4 quantisation with bitsandbytes\) needs a CUDA GPU"):
        _setup(demo, tmp_path, {"name": "qlora"})
    assert not (tmp_path / "base").exists()  # not even the tiny model was built


def test_adalora_budget_reaches_target_rank(demo, tmp_path):
    """4 steps, tfinal 1: at step 3 (= total_step - tfinal) the allocator fixes the final budget, target_r 2 × 4
    adapted matrices (c_attn in each of 4 blocks) = 8 ranks kept out of init_r 6 × 4 = 24."""
    setup = _setup(demo, tmp_path, {"name": "adalora", "init_r": 6, "target_r": 2, "tinit": 1, "tfinal": 1}, steps=4)
    config = setup.trainer.model.peft_config["default"]
    assert config.total_step == 4 and config.rank_pattern is None
    run_training(setup)
    assert len(config.rank_pattern) == 4
    assert sum(sum(kept) for kept in config.rank_pattern.values()) == 8


@pytest.mark.gpu
def test_qlora_trains_adapters_on_a_4bit_base_and_saves_merged(demo, tmp_path):
    pytest.importorskip("bitsandbytes")
    setup = _setup(demo, tmp_path, {"name": "qlora", "r": 4}, "tiny_llama", device="cuda", precision="auto")
    assert any("4bit" in type(m).__name__ for m in setup.trainer.model.modules())
    before = _snapshot(setup.trainer.model)
    trainable = {n for n, (_, grad) in before.items() if grad}
    result, changed = _train(setup)
    assert trainable and all("lora_" in n for n in trainable) and changed == trainable
    merged, tok = load_causal_lm(result.model_dir)
    assert not (result.model_dir / "adapter_config.json").exists()
    with torch.no_grad():
        merged(**tok("What is 2 plus 2?", return_tensors="pt"))
