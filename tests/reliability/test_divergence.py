"""Divergence guard: a run whose loss or gradient norm turns NaN/inf stops at that update with one line, and no model
directory with non-finite weights is ever written (finetune.training.DivergenceGuard, finetune.models.directory).

A learning rate of 1e6 takes the tiny models below to NaN in their second update: the first update (from finite
weights) has a finite loss and gradient norm, and moves the weights by ~1e6 × Adam's ~1 per element, so the second
forward pass overflows.
"""

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from finetune.data.instructions import load_instruction_data
from finetune.generation.training import sft_setup, train_sft
from finetune.models.directory import save_model_directory
from finetune.params import (
    CrossEncoderParams,
    DemoInstructions,
    InstructionDataParams,
    MiningParams,
    SftParams,
    TinyBertModel,
    TrainingParams,
)
from finetune.ranking.cross_encoder import mine_hard_negatives, train_cross_encoder
from finetune.training import DivergenceGuard, divergence_guard


def _leftovers(folder: Path) -> list[str]:
    """Model folders, complete or partial, in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name == "model" or p.name.startswith(".model.partial"))


@pytest.fixture
def pairs(toy_ranking):
    order = ["20", "21", "10", "12", "14", "16", "11", "13", "15", "17", "18", "19"]
    run = {q: {pid: float(len(order) - i) for i, pid in enumerate(order)} for q in toy_ranking.queries}
    return mine_hard_negatives(toy_ranking, run, MiningParams(negatives_per_positive=3, positive_min_grade=2))


def test_cross_encoder_stops_at_the_diverging_update_and_saves_nothing(pairs, tmp_path):
    params = CrossEncoderParams(
        model=TinyBertModel(hidden_size=32, num_layers=2, num_heads=2, vocab_size=200), loss="bce",
        training=TrainingParams(max_steps=6, per_device_batch_size=8, learning_rate=1e6, warmup_ratio=0.0,
                                max_length=32, device="cpu", precision="fp32", seed=0),
    )
    message = ("train_cross_encoder: training diverged at update 2 of 6: loss is nan (grad norm nan); "
               "lower learning_rate (1000000.0)")
    with pytest.raises(FloatingPointError, match=f"^{re.escape(message)}$"):
        train_cross_encoder(pairs, params, tmp_path)
    assert _leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = InstructionDataParams(source=DemoInstructions(output_dir=tmp_path_factory.mktemp("d"), num_examples=40),
                                 validation_fraction=0.0, test_fraction=0.0)
    train, validation, _ = load_instruction_data(data)
    return train, validation, data.template


def _sft_params(learning_rate: float, device: str = "cpu", precision: str = "fp32") -> SftParams:
    return SftParams(model={"kind": "tiny_gpt2"}, method={"name": "full"},
                     training={"per_device_batch_size": 4, "learning_rate": learning_rate, "warmup_ratio": 0.0,
                               "max_length": 64, "max_steps": 5, "device": device, "precision": precision})


def test_sft_stops_at_the_diverging_update_and_saves_nothing(demo, tmp_path):
    train, validation, template = demo
    message = ("train_sft: training diverged at update 2 of 5: loss is nan (grad norm nan); "
               "lower learning_rate (1000000.0)")
    with pytest.raises(FloatingPointError, match=f"^{re.escape(message)}$"):
        train_sft(train, validation, template, _sft_params(1e6), tmp_path)
    assert _leftovers(tmp_path) == []


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2))


def test_non_finite_weights_are_refused_at_save_naming_the_weight(tmp_path):
    model = _tiny_gpt2()
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[3, 2] = float("nan")
    target = tmp_path / "model"
    message = (f"refusing to save {target}: weight transformer.h.0.mlp.c_fc.weight holds NaN values (training "
               "diverged; lower learning_rate or use precision: fp32)")
    with pytest.raises(FloatingPointError, match=f"^{re.escape(message)}$"):
        save_model_directory(model, target, model.save_pretrained)
    assert _leftovers(tmp_path) == []
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[3, 2] = 0.0
        model.transformer.ln_f.bias[0] = -float("inf")
    with pytest.raises(FloatingPointError, match=r"weight transformer\.ln_f\.bias holds inf values"):
        save_model_directory(model, target, model.save_pretrained)


def test_a_save_that_fails_half_way_leaves_the_previous_model_whole(tmp_path):
    model, target = _tiny_gpt2(), tmp_path / "model"
    save_model_directory(model, target, model.save_pretrained)
    before = sorted(p.name for p in target.iterdir())

    def half_write(path: Path) -> None:
        (path / "config.json").write_text("{")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model_directory(model, target, half_write)
    assert _leftovers(tmp_path) == ["model"] and sorted(p.name for p in target.iterdir()) == before
    assert (target / "model.safetensors").stat().st_size > 0


def _stand_in_trainer(scaler, grad: float, *losses: float):
    """What the guard reads of a Trainer: one parameter with gradient ``grad``; ``training_step`` returns ``losses``."""
    weight = torch.nn.Parameter(torch.ones(3))
    weight.grad = torch.tensor([1.0, grad, 1.0])
    returned = iter(losses)
    return SimpleNamespace(
        training_step=lambda *args: torch.tensor(next(returned)),
        model=torch.nn.ParameterList([weight]),
        accelerator=SimpleNamespace(scaler=scaler, sync_gradients=True),
        args=SimpleNamespace(learning_rate=2e-5, bf16=scaler is None, fp16=scaler is not None),
        state=SimpleNamespace(global_step=6, max_steps=10),
    )


def test_inf_gradients_under_fp16_loss_scaling_are_the_scalers_business():
    """fp16: a GradScaler skips an update with inf gradients and lowers its scale (routine at a new scale), so the
    guard lets it pass; bf16 and fp32 have no scaler, and the same gradients would reach the weights."""
    scaled = _stand_in_trainer(object(), float("inf"), 2.5)
    with divergence_guard(scaled, "train_sft"):
        assert scaled.training_step(None, {}).item() == 2.5
    bf16 = _stand_in_trainer(None, float("inf"), 2.5)
    message = ("train_sft: training diverged at update 7 of 10: loss is 2.5 (grad norm inf); "
               "lower learning_rate (2e-05) or use precision: fp32")
    with divergence_guard(bf16, "train_sft"), pytest.raises(FloatingPointError, match=f"^{re.escape(message)}$"):
        bf16.training_step(None, {})
    nan_loss = _stand_in_trainer(object(), 1.0, float("nan"))  # never the scaler's doing
    with divergence_guard(nan_loss, "train_sft"), pytest.raises(
            FloatingPointError, match=r"update 7 of 10: loss is nan \(grad norm not checked under fp16 loss scaling\)"):
        nan_loss.training_step(None, {})


def test_gradient_accumulation_checks_once_per_update_with_every_micro_batch_loss():
    trainer = _stand_in_trainer(None, 1.0, float("inf"), 0.5)
    guard = DivergenceGuard(trainer, "train_sft")
    trainer.accelerator.sync_gradients = False  # the first of two micro-batches: gradients not complete, no check
    assert guard(None, {}).item() == float("inf")
    trainer.accelerator.sync_gradients = True
    with pytest.raises(FloatingPointError, match=r"update 7 of 10: loss is inf \(grad norm 1\.732\)"):  # √3
        guard(None, {})


@pytest.mark.gpu
def test_fp16_updates_skipped_by_the_grad_scaler_do_not_stop_training(demo, tmp_path):
    """A scale of 2^100 makes every fp16 backward overflow: the scaler skips all 5 updates (weights unchanged)."""
    from finetune.generation.training import run_training

    train, validation, template = demo
    setup = sft_setup(train, validation, template, _sft_params(1e-3, device="cuda", precision="fp16"), tmp_path)
    setup.trainer.accelerator.scaler = torch.amp.GradScaler("cuda", init_scale=2.0**100)  # prepared in train()
    before = {n: p.detach().clone() for n, p in setup.trainer.model.named_parameters()}
    result = run_training(setup)
    assert result.stats["steps"] == 5 and setup.trainer.accelerator.scaler.get_scale() == 2.0**95
    assert all(torch.equal(before[n], p.detach()) for n, p in setup.trainer.model.named_parameters())
    assert (result.model_dir / "model.safetensors").is_file()
