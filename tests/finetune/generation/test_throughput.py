"""Fast SFT batching (length-grouped, padding-free), the training-token count, and the MFU arithmetic."""

import pytest
import torch
from pydantic import ValidationError

from finetune.data.instructions import load_instruction_data, render_frame
from finetune.generation.throughput import (
    loss_tokens,
    model_flops_utilisation,
    peak_bf16_tflops,
    tokenize_examples,
    training_flops_per_token,
)
from finetune.generation.training import sft_setup
from finetune.params import DemoInstructions, InstructionDataParams, MethodComparisonParams, SftParams

TRAINING = {"per_device_batch_size": 8, "learning_rate": 1e-2, "warmup_ratio": 0.0, "max_length": 64,
            "max_steps": 2, "device": "cpu", "precision": "fp32"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = InstructionDataParams(source=DemoInstructions(output_dir=tmp_path_factory.mktemp("d"), num_examples=120),
                                 validation_fraction=0.0, test_fraction=0.0)
    train, _, _ = load_instruction_data(data)
    return train, data.template


def _setup(demo, path, **options):
    train, template = demo
    params = SftParams(model={"kind": "tiny_llama", "hidden_size": 32, "num_heads": 4, "intermediate_size": 64},
                       method={"name": "full"}, training=TRAINING, **options)
    return sft_setup(train, train.iloc[:0], template, params, path)


def test_padding_free_loss_equals_padded_loss(demo, tmp_path):
    """One batch of 8 examples of different lengths: the flattened row scores the same tokens with the same loss.

    Both setups build the same seeded model; if attention leaked across the examples of the flattened row, the
    completion tokens after the first example would see other examples and the loss would differ.
    """
    padded = _setup(demo, tmp_path / "padded", group_by_length=False)
    flat = _setup(demo, tmp_path / "flat", group_by_length=False, padding_free=True)
    rows = [padded.trainer.train_dataset[i] for i in range(8)]
    assert rows == [flat.trainer.train_dataset[i] for i in range(8)]
    a, b = padded.trainer.data_collator(rows), flat.trainer.data_collator(rows)
    lengths = a["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) > 1 and a["input_ids"].shape == (8, max(lengths))
    assert "attention_mask" not in b and b["input_ids"].shape == (1, sum(lengths))  # one row, no padding
    # Position ids restart at 0 for every example.
    assert torch.equal(b["position_ids"][0], torch.cat([torch.arange(n) for n in lengths]))
    assert (a["labels"] != -100).sum() == (b["labels"] != -100).sum()  # the same completion tokens carry loss
    with torch.no_grad():
        padded.trainer.model.eval(), flat.trainer.model.eval()
        loss_a = padded.trainer.compute_loss(padded.trainer.model, dict(a)).item()
        loss_b = flat.trainer.compute_loss(flat.trainer.model, dict(b)).item()
    assert loss_a == pytest.approx(loss_b, abs=1e-5)
    assert loss_a > 1.0  # a random-init model: the loss is near ln(vocab), not a trivial zero


def test_length_grouped_batches_cut_padding_and_see_every_example_once(demo, tmp_path):
    grouped = _setup(demo, tmp_path / "grouped")  # group_by_length is the default
    plain = _setup(demo, tmp_path / "plain", group_by_length=False)
    assert grouped.trainer.args.train_sampling_strategy == "group_by_length"
    assert plain.trainer.args.train_sampling_strategy == "random"  # TRL's default
    lengths = [len(r["input_ids"]) for r in grouped.trainer.train_dataset]

    def padded_tokens(order):
        return sum(max(lengths[i] for i in order[k:k + 8]) * len(order[k:k + 8]) for k in range(0, len(order), 8))

    order = list(grouped.trainer._get_train_sampler())
    random_order = list(plain.trainer._get_train_sampler())
    assert sorted(order) == list(range(len(lengths))) == sorted(random_order)  # a permutation: each example once
    padding = padded_tokens(order) - sum(lengths)
    random_padding = padded_tokens(random_order) - sum(lengths)
    assert padding < random_padding / 2
    assert max(lengths[i] for i in order[:8]) == max(lengths)  # the longest batch first: OOM shows at step 1


def test_padding_free_is_refused_for_prompt_learning():
    with pytest.raises(ValidationError, match="padding_free: method prompt_tuning"):
        SftParams(model={"kind": "tiny_gpt2"}, method={"name": "prompt_tuning"}, padding_free=True)
    with pytest.raises(ValidationError, match="padding_free: method prefix_tuning"):
        MethodComparisonParams(model={"kind": "tiny_gpt2"}, methods=[{"name": "full"}, {"name": "prefix_tuning"}],
                               padding_free=True)
    comparison = MethodComparisonParams(model={"kind": "tiny_gpt2"}, methods=[{"name": "full"}, {"name": "lora"}],
                                        group_by_length=False, padding_free=True)
    arm = comparison.sft_params(comparison.methods[1])
    assert (arm.group_by_length, arm.padding_free) == (False, True)


def test_loss_tokens_golden():
    """Labels [-100, -100, 3, 4] → 2 tokens; [5, 6, 7] (full-sequence loss) → 3 - 1 = 2: the first has no label."""
    rows = [{"input_ids": [1, 2, 3, 4], "labels": [-100, -100, 3, 4]}, {"input_ids": [5, 6, 7], "labels": [5, 6, 7]}]
    assert loss_tokens(rows) == 4


@pytest.mark.parametrize("completion_only", [True, False])
def test_pre_tokenized_examples_equal_trl_own_preparation(demo, tmp_path, completion_only):
    """Our one-pass tokenization gives SFTTrainer exactly the rows it would have built from the raw strings.

    max_length 44 truncates the longer demo examples (39-69 tokens with the 500-token vocabulary), and a prompt
    of 60 words leaves nothing to learn from: TRL drops such an example, and so do we.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    setup = _setup(demo, tmp_path / "ours", completion_only=completion_only)
    tokenizer = setup.tokenizer
    frame = render_frame(demo[0], demo[1], tokenizer)
    prompts = frame["prompt"].tolist() + ["word " * 60]
    completions = [c.removesuffix(tokenizer.eos_token) for c in frame["completion"]] + ["dropped"]
    ours = tokenize_examples(tokenizer, prompts, completions, 44, completion_only)
    args = SFTConfig(output_dir=str(tmp_path / "trl"), max_length=44, completion_only_loss=completion_only,
                     use_cpu=True, bf16=False, report_to="none")
    trl = SFTTrainer(model=setup.trainer.model, args=args, processing_class=tokenizer,
                     train_dataset=Dataset.from_dict({"prompt": prompts, "completion": completions})).train_dataset
    assert ours.columns == {"input_ids": trl["input_ids"], "labels": trl["labels"]}
    assert len(ours.lengths) == len(prompts) and len(trl) == len(prompts) - completion_only
    assert max(ours.lengths) > 44 and all(len(ids) <= 44 for ids in ours.columns["input_ids"])


def test_mfu_golden():
    """100,000 tokens/s × 6 × 5e8 parameters = 3e14 FLOP/s; ÷ (1,000 TFLOP/s = 1e15) = 0.30.

    A Qwen2.5-0.5B-shaped model (494,032,768 parameters) at 50,000 tokens/s on an H100 SXM (989.4 TFLOP/s):
    50,000 × 6 × 494,032,768 = 1.48209830e14; ÷ 9.894e14 = 0.149797.
    """
    assert training_flops_per_token(500_000_000) == 3e9
    assert model_flops_utilisation(100_000, 500_000_000, 1000.0) == pytest.approx(0.30)
    assert model_flops_utilisation(50_000, 494_032_768, peak_bf16_tflops("NVIDIA H100 80GB HBM3")) == pytest.approx(
        0.149797, abs=1e-6)
    with pytest.raises(ValueError, match="peak_tflops"):
        model_flops_utilisation(1.0, 1, 0.0)


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L4", 121.0), ("NVIDIA L40S", 362.1),
    ("NVIDIA GeForce RTX 4090", 165.2), ("NVIDIA A10G", None), ("Tesla T4", None),
])
def test_peak_table_matches_whole_words(name, peak):
    assert peak_bf16_tflops(name) == peak
