"""SFT and continued pre-training: labels, packing, loss going down, validation, early stopping, parameter mapping."""

import math

import pytest
import torch

from finetune.data.instructions import load_instruction_data
from finetune.data.text import load_text_data
from finetune.device import Placement
from finetune.generation.training import (
    causal_lm_setup,
    group_texts,
    run_training,
    sft_setup,
    to_training_arguments,
    token_length_stats,
)
from finetune.params import (
    CausalLmParams,
    DemoInstructions,
    DemoText,
    GenerationTrainingParams,
    InstructionDataParams,
    SftParams,
    TextDataParams,
)

TRAINING = {"per_device_batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0, "max_length": 64,
            "logging_steps": 1, "eval_steps": 2, "device": "cpu", "precision": "fp32"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = InstructionDataParams(source=DemoInstructions(output_dir=tmp_path_factory.mktemp("d"), num_examples=160),
                                 validation_fraction=0.1, test_fraction=0.0)
    train, validation, _ = load_instruction_data(data)
    return train, validation, data.template


def _sft(demo, tmp_path, steps=3, method="full", **options):
    train, validation, template = demo
    training = {**TRAINING, "max_steps": steps, **options.pop("training", {})}
    params = SftParams(model={"kind": "tiny_gpt2"}, method={"name": method}, training=training, **options)
    return sft_setup(train, validation, template, params, tmp_path)


@pytest.mark.parametrize("completion_only", [True, False])
def test_completion_only_labels_mask_the_prompt(demo, tmp_path, completion_only):
    setup = _sft(demo, tmp_path, completion_only=completion_only)
    tok = setup.tokenizer
    batch = setup.trainer.data_collator([setup.trainer.train_dataset[i] for i in range(2)])
    example = demo[0].iloc[0]
    for row in range(2):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        learned = tok.decode(ids[labels != -100])
        if completion_only:
            assert learned == demo[0].iloc[row]["response"] + "<|endoftext|>"
        else:
            assert torch.equal(labels[mask == 1], ids[mask == 1]) and learned.startswith("### Instruction:")
        assert (labels[mask == 0] == -100).all()
    assert tok.decode(batch["input_ids"][0][batch["attention_mask"][0] == 1]) == (
        f"### Instruction:\n{example['prompt']}\n\n### Response:\n{example['response']}<|endoftext|>")


def test_packing_is_padding_free_and_trains(demo, tmp_path):
    setup = _sft(demo, tmp_path, steps=2, packing=True, training={"max_length": 128})
    dataset = setup.trainer.train_dataset
    assert len(dataset) < len(demo[0])  # 128 examples of ~20-40 tokens packed into fewer 128-token rows
    batch = setup.trainer.data_collator([dataset[0]])
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch  # one flat row, no padding
    starts = (batch["position_ids"][0] == 0).sum().item()
    assert starts > 1  # position ids restart at every packed example
    labels = batch["labels"][0]
    assert (labels == -100).sum() > 0  # prompts stay masked when packed (completion-only is the default)
    assert run_training(setup).stats["steps"] == 2


def test_sft_loss_goes_down_and_validation_is_logged(demo, tmp_path):
    setup = _sft(demo, tmp_path, steps=30, training={"eval_steps": 10, "learning_rate": 1e-2})
    before = setup.trainer.evaluate()["eval_loss"]
    result = run_training(setup)
    assert result.stats["validation_loss"] < before - 1.0  # random init ≈ ln(500) = 6.2; 30 steps learn the format
    evals = [e["eval_loss"] for e in result.log_history if "eval_loss" in e]
    assert len(evals) >= 3 and result.stats["validation_perplexity"] == pytest.approx(
        math.exp(result.stats["validation_loss"]), rel=1e-3)
    stats = result.stats
    assert stats["train_tokens"] > 0 and stats["tokens_per_second"] > 0 and stats["trainable_parameters"] > 0
    assert result.tokenization["train"]["count"] == len(demo[0]) and result.tokenization["train"]["max"] < 64


def test_early_stopping_keeps_the_best_checkpoint(demo, tmp_path):
    """A learning rate of 3.0 overshoots: validation loss rises after the first evaluations, patience 1 stops the
    run, and the checkpoint with the lowest validation loss is the one kept."""
    setup = _sft(demo, tmp_path, steps=40, training={"learning_rate": 3.0, "early_stopping_patience": 1,
                                                     "lr_scheduler": "constant"})
    result = run_training(setup)
    evals = [e["eval_loss"] for e in result.log_history if "eval_loss" in e][:-1]  # last entry: the final evaluate()
    assert result.stats["steps"] < 40
    assert result.stats["validation_loss"] == pytest.approx(min(evals), abs=1e-4)


def test_early_stopping_needs_validation(demo, tmp_path):
    train, _, template = demo
    params = SftParams(model={"kind": "tiny_gpt2"}, method={"name": "full"},
                       training={**TRAINING, "max_steps": 2, "early_stopping_patience": 2})
    with pytest.raises(ValueError, match="early_stopping_patience needs validation data"):
        sft_setup(train, train.iloc[:0], template, params, tmp_path)


def test_group_texts_golden():
    """Docs [1,2,3] and [4,5] with EOS 0 → stream 1 2 3 0 4 5 0 (7 tokens) → two blocks of 3, remainder dropped."""
    assert group_texts([[1, 2, 3], [4, 5]], 3, 0) == [[1, 2, 3], [0, 4, 5]]


def test_causal_lm_training_lowers_held_out_loss(tmp_path):
    data = TextDataParams(source=DemoText(output_dir=tmp_path / "text", num_documents=20), validation_fraction=0.2,
                          test_fraction=0.0)
    train, validation, _ = load_text_data(data)
    params = CausalLmParams(model={"kind": "tiny_llama"}, method={"name": "full"},
                            training={**TRAINING, "max_steps": 25, "eval_steps": 25}, block_size=32)
    setup = causal_lm_setup(train, validation, params, tmp_path / "run")
    blocks = setup.trainer.train_dataset
    assert all(len(row["input_ids"]) == 32 and row["labels"] == row["input_ids"] for row in blocks)
    assert setup.tokenization["train"]["blocks"] == len(blocks)
    before = setup.trainer.evaluate()["eval_loss"]
    result = run_training(setup)
    assert result.stats["validation_loss"] < before - 0.5


def test_parameters_map_onto_trainer_arguments(tmp_path):
    params = GenerationTrainingParams(epochs=2, per_device_batch_size=8, gradient_accumulation_steps=4,
                                      learning_rate=3e-4, warmup_ratio=0.05, lr_scheduler="cosine", eval_steps=25,
                                      early_stopping_patience=3, seed=7)
    placement = Placement("cpu", "fp32")
    args = to_training_arguments(params, tmp_path, placement, has_validation=True,
                                 sft={"max_length": 99, "packing": True, "completion_only_loss": True})
    assert type(args).__name__ == "SFTConfig" and args.max_length == 99 and args.packing
    assert (args.num_train_epochs, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 8, 4)
    assert args.learning_rate == 3e-4 and args.lr_scheduler_type == "cosine" and args.seed == 7
    assert args.eval_steps == args.save_steps == 25 and args.load_best_model_at_end
    assert args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    assert not args.gradient_checkpointing  # TRL defaults it on; ours is off unless asked
    plain = to_training_arguments(params, tmp_path, placement, has_validation=False)
    assert type(plain).__name__ == "TrainingArguments" and plain.eval_strategy == "no"


def test_token_length_stats_golden():
    """Lengths 1..10 with max_length 8: mean 5.5, p50 = sorted[5] = 6, p95 = sorted[ceil(9.5) - 1] = 10,
    2 of 10 longer than 8."""
    stats = token_length_stats(list(range(10, 0, -1)), 8)
    assert stats == {"count": 10, "mean": 5.5, "p50": 6, "p95": 10, "max": 10, "truncated_fraction": 0.2}


def test_virtual_tokens_must_fit_in_the_positions(demo, tmp_path):
    train, validation, template = demo
    params = SftParams(model={"kind": "tiny_gpt2", "max_position_embeddings": 64},
                       method={"name": "prompt_tuning", "num_virtual_tokens": 8},
                       training={**TRAINING, "max_steps": 1, "max_length": 60})
    with pytest.raises(ValueError, match="60 tokens \\+ 8 virtual tokens exceed the model's 64 positions; lower "
                                         "training.max_length \\(or block_size\\) to 56"):
        sft_setup(train, validation, template, params, tmp_path)
