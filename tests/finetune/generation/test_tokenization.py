"""Tokenizing apart from training: the same sequences, the same training (losses and weights bit for bit) from
tables tokenized inside the training function and from splits tokenized beforehand and read back from disk."""

import pytest
import torch
from safetensors.torch import load_file

from finetune.data.instructions import load_instruction_data, render_frame
from finetune.data.text import load_text_data
from finetune.data.tokenized import length_histogram, read_tokenized
from finetune.generation.throughput import tokenize_examples
from finetune.generation.tokenization import group_texts, tokenize_documents, tokenize_instructions
from finetune.generation.training import train_causal_lm, train_sft
from finetune.models.causal import base_model_directory, load_causal_lm
from finetune.params import (
    CausalLmParams,
    DemoInstructions,
    DemoText,
    InstructionDataParams,
    LocalModel,
    SftParams,
    TextDataParams,
    TinyGpt2Model,
    TinyLlamaModel,
)

TRAINING = {"per_device_batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0, "max_length": 40,
            "logging_steps": 1, "eval_steps": 3, "device": "cpu", "precision": "fp32", "max_steps": 6}


@pytest.fixture(scope="module")
def instructions(tmp_path_factory):
    data = InstructionDataParams(source=DemoInstructions(output_dir=tmp_path_factory.mktemp("d"), num_examples=60),
                                 validation_fraction=0.2, test_fraction=0.0)
    train, validation, _ = load_instruction_data(data)
    texts = train["prompt"].tolist() + train["response"].tolist()
    base, _ = base_model_directory(TinyGpt2Model(), tmp_path_factory.mktemp("base"), texts)
    return train, validation, data.template, base


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    data = TextDataParams(source=DemoText(output_dir=tmp_path_factory.mktemp("t"), num_documents=20),
                          validation_fraction=0.2, test_fraction=0.0)
    train, validation, _ = load_text_data(data)
    base, _ = base_model_directory(TinyLlamaModel(), tmp_path_factory.mktemp("base"), train["text"].tolist())
    return train, validation, base


def _same_weights(a, b) -> None:
    left, right = load_file(f"{a}/model.safetensors"), load_file(f"{b}/model.safetensors")
    assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def _losses(result) -> list[float]:
    return [e[k] for e in result.log_history for k in ("loss", "eval_loss") if k in e]


def test_sft_trains_bit_identically_from_pretokenized_splits(instructions, tmp_path):
    train, validation, template, base = instructions
    params = SftParams(model=LocalModel(path=base), method={"name": "full"}, training=TRAINING)
    tokenized = tokenize_instructions(base, {"train": train, "validation": validation},
                                      params.tokenization(template), tmp_path / "tok")
    reread = {name: read_tokenized(t.path) for name, t in tokenized.items()}  # as a materializer hands it back
    # The sequences are those the training function made in memory before (render, then tokenize as TRL does).
    _, tokenizer = load_causal_lm(base)
    rendered = render_frame(train, template, tokenizer)
    inline = tokenize_examples(tokenizer, rendered["prompt"], rendered["completion"], 40, True).columns
    assert reread["train"].load()["input_ids"][:] == inline["input_ids"]
    assert reread["train"].load()["labels"][:] == inline["labels"]

    old = train_sft(train, validation, template, params, tmp_path / "old")
    new = train_sft(reread["train"], reread["validation"], None, params, tmp_path / "new")
    assert _losses(old) == _losses(new) and len(_losses(old)) >= 8  # 6 training losses + 2 validations
    assert old.stats["train_tokens"] == new.stats["train_tokens"] and old.tokenization == new.tokenization
    _same_weights(old.model_dir, new.model_dir)


def test_sft_refuses_splits_tokenized_for_other_settings(instructions, tmp_path):
    train, validation, template, base = instructions
    params = SftParams(model=LocalModel(path=base), method={"name": "full"}, training=TRAINING)
    tokenized = tokenize_instructions(base, {"train": train, "validation": validation.iloc[:0]},
                                      params.tokenization(template), tmp_path / "tok")
    longer = params.model_copy(update={"training": params.training.model_copy(update={"max_length": 48})})
    with pytest.raises(ValueError, match="^tokenized train: tokenized with max_length 40, but this training uses 48;"):
        train_sft(tokenized["train"], tokenized["validation"], None, longer, tmp_path / "run")
    with pytest.raises(ValueError, match="tokenized with template"):
        train_sft(tokenized["train"], tokenized["validation"], "{prompt} =", params, tmp_path / "run2")


def test_causal_lm_trains_bit_identically_from_pretokenized_blocks(documents, tmp_path):
    train, validation, base = documents
    params = CausalLmParams(model=LocalModel(path=base), method={"name": "full"}, training=TRAINING, block_size=32)
    tokenized = tokenize_documents(base, {"train": train, "validation": validation}, params.tokenization(),
                                   tmp_path / "tok")
    # The blocks are those of one tokenizer call per document (the code before tokenizing in batches).
    _, tokenizer = load_causal_lm(base)
    per_document = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in train["text"]]
    assert tokenized["train"].load()["input_ids"][:] == group_texts(per_document, 32, tokenizer.eos_token_id)

    old = train_causal_lm(train, validation, params, tmp_path / "old")
    new = train_causal_lm(tokenized["train"], tokenized["validation"], params, tmp_path / "new")
    assert _losses(old) == _losses(new) and old.tokenization == new.tokenization
    _same_weights(old.model_dir, new.model_dir)

    stats = tokenized["train"].stats
    stream = sum(map(len, per_document)) + len(per_document)  # every document followed by EOS
    assert stats["rows"] == stream // 32 and stats["tokens"] == 32 * (stream // 32)
    assert stats["truncated"] == stream % 32 and stats["truncation_rate"] == round(stream % 32 / stream, 4)
    assert sum(b["count"] for b in stats["histogram"]) == stats["examples"] == len(train)
    with pytest.raises(ValueError, match="tokenized with max_length 32, but this training uses 16"):
        train_causal_lm(tokenized["train"], tokenized["validation"], params.model_copy(update={"block_size": 16}),
                        tmp_path / "run")


def test_length_histogram_golden():
    """Lengths 0..9 and 25 in 5 bins: width ceil(26 / 5) = 6, so [0,6) holds 0..5, [6,12) 6..9, [24,30) 25."""
    bins = length_histogram([*range(10), 25], bins=5)
    assert [(b["low"], b["high"], b["count"]) for b in bins] == [(0, 6, 6), (6, 12, 4), (12, 18, 0), (18, 24, 0),
                                                                 (24, 30, 1)]
    assert length_histogram([]) == []
