"""Generation data and training steps through ``.entrypoint()``: the same code a run executes."""

import json

import pandas as pd
import pytest
import torch

from finetune.models.causal import load_causal_lm
from finetune.params import InstructionDataParams, SftParams, TextDataParams, TinyGpt2Model
from steps.data.fingerprint_instructions import fingerprint_instructions
from steps.data.fingerprint_text_corpus import fingerprint_text_corpus
from steps.data.load_instructions import load_instructions
from steps.data.load_text_corpus import load_text_corpus
from steps.data.tokenize_instructions import tokenize_instructions
from steps.evaluate.collect_method_result import collect_method_result
from steps.train.prepare_causal_lm import prepare_causal_lm
from steps.train.train_sft_model import train_sft_model

TINY = {"kind": "tiny_gpt2", "hidden_size": 32, "num_layers": 2, "vocab_size": 400, "max_position_embeddings": 64}


@pytest.fixture
def instructions(tmp_path):
    data = InstructionDataParams.model_validate({"source": {"kind": "demo", "output_dir": str(tmp_path / "d"),
                                                            "layout": "messages", "num_examples": 30},
                                                 "template": "chat"})
    return data, load_instructions.entrypoint(data, fingerprint_instructions.entrypoint(data))


def test_fingerprint_follows_the_bytes_and_load_splits(instructions):
    data, (train, validation, test) = instructions
    assert (len(train), len(validation), len(test)) == (24, 3, 3)
    path = data.source.output_dir / "instructions.messages.jsonl"
    first = fingerprint_instructions.entrypoint(data)
    assert list(first) == [str(path)]
    assert json.loads(train["messages"].iloc[0])[-1]["role"] == "assistant"


def test_text_corpus_steps(tmp_path):
    data = TextDataParams.model_validate({"source": {"kind": "demo", "output_dir": str(tmp_path), "num_documents": 10}})
    train, validation, test = load_text_corpus.entrypoint(data, fingerprint_text_corpus.entrypoint(data))
    assert (len(train), len(validation), len(test)) == (8, 1, 1) and list(train.columns) == ["text"]


def test_prepare_then_train_with_the_chat_template(instructions):
    data, (train, validation, _) = instructions
    base = prepare_causal_lm.entrypoint(TinyGpt2Model.model_validate(TINY), train)
    assert base.kind == "causal_lm" and base.num_parameters > 0 and "tiny_gpt2" in base.base_model
    sft = SftParams.model_validate({"model": TINY, "method": {"name": "lora", "r": 2},
                                    "training": {"max_steps": 2, "per_device_batch_size": 4, "max_length": 48,
                                                 "eval_steps": 1, "device": "cpu"}})
    tokenized_train, tokenized_validation = tokenize_instructions.entrypoint(base, train, validation,
                                                                            sft.tokenization(data.template))
    assert (tokenized_train.stats["examples"], tokenized_validation.stats["examples"]) == (24, 3)
    assert tokenized_train.stats["template"] == "chat" and tokenized_train.load().num_rows == tokenized_train.rows
    model_dir, log, stats = train_sft_model.entrypoint(base, tokenized_train, tokenized_validation, sft)
    assert stats["method"] == "lora" and stats["steps"] == 2 and any("eval_loss" in e for e in log)
    model, tokenizer = load_causal_lm(model_dir.path)
    with torch.no_grad():
        model(**tokenizer("hello", return_tensors="pt"))


def test_qlora_fails_before_the_base_model_is_built(instructions):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _, (train, _, _) = instructions
    with pytest.raises(ValueError, match="QLoRA .* needs a CUDA GPU"):
        prepare_causal_lm.entrypoint(TinyGpt2Model.model_validate(TINY), train, quantize_4bit=True)


def test_collect_method_result_appends_rows():
    first = collect_method_result.entrypoint("full", {"trainable_parameters": 10, "total_parameters": 10},
                                             {"test_perplexity": 5.0}, {"test_rougeL": 0.5})
    both = collect_method_result.entrypoint("lora", {"trainable_parameters": 1, "total_parameters": 10},
                                            {"test_perplexity": 7.0}, {"test_rougeL": 0.25}, {"test_mc_accuracy": 0.5},
                                            first)
    assert isinstance(both, pd.DataFrame) and both["method"].tolist() == ["full", "lora"]
    assert both["trainable_percent"].tolist() == [100.0, 10.0]
    assert pd.isna(both["test_mc_accuracy"].iloc[0]) and both["test_mc_accuracy"].iloc[1] == 0.5
