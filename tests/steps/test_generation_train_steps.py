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
    first, _ = collect_method_result.entrypoint("full", {"trainable_parameters": 10, "total_parameters": 10},
                                                {"test_perplexity": 5.0}, {"test_rougeL": 0.5})
    both, per_item = collect_method_result.entrypoint(
        "lora", {"trainable_parameters": 1, "total_parameters": 10}, {"test_perplexity": 7.0}, {"test_rougeL": 0.25},
        {"test_mc_accuracy": 0.5}, first)
    assert isinstance(both, pd.DataFrame) and both["method"].tolist() == ["full", "lora"]
    assert both["trainable_percent"].tolist() == [100.0, 10.0]
    assert pd.isna(both["test_mc_accuracy"].iloc[0]) and both["test_mc_accuracy"].iloc[1] == 0.5
    assert per_item == {} and "rougeL_vs_untuned" not in both  # no per-item values given: nothing to pair


def test_collect_method_result_pairs_each_method_with_the_untuned_model():
    """ROUGE-L per prompt 0.5, 0.6, 0.7 against the untuned 0.1, 0.3, 0.2: +0.4 [+0.1516, +0.6484], p = 0.0202
    (finetune.promotion.paired_difference's example); perplexity per window 20, 20 vs 10, 40: NLL differences
    +ln 2 and −ln 2, mean 0."""
    untuned = {"a": 0.1, "b": 0.3, "c": 0.2}
    table, per_item = collect_method_result.entrypoint(
        "untuned", {"trainable_parameters": 0}, {"test_perplexity": 30.0}, {"test_rougeL": 0.2},
        per_item_rougeL=untuned)
    table, per_item = collect_method_result.entrypoint(
        "lora", {"trainable_parameters": 1}, {"test_perplexity": 20.0}, {"test_rougeL": 0.6}, None, table,
        per_item_rougeL={"a": 0.5, "b": 0.6, "c": 0.7}, per_item_perplexity={"w1": 20.0, "w2": 20.0},
        baseline_per_item_rougeL=untuned, baseline_per_item_perplexity={"w1": 10.0, "w2": 40.0},
        previous_per_item=per_item)
    lora = table.set_index("method").loc["lora"]
    assert lora["rougeL_vs_untuned"] == pytest.approx(0.4)
    assert (lora["rougeL_vs_untuned_ci_low"], lora["rougeL_vs_untuned_ci_high"]) == pytest.approx((0.1516, 0.6484),
                                                                                                  abs=1e-4)
    assert lora["rougeL_vs_untuned_p"] == pytest.approx(0.0202, abs=1e-4) and lora["rougeL_vs_untuned_n"] == 3
    assert lora["nll_vs_untuned"] == pytest.approx(0.0, abs=1e-12) and lora["nll_vs_untuned_n"] == 2
    assert pd.isna(table.set_index("method").loc["untuned", "rougeL_vs_untuned"])
    assert per_item == {"untuned": untuned, "lora": {"a": 0.5, "b": 0.6, "c": 0.7}}


def test_collect_method_result_says_why_there_is_no_paired_nll_for_a_single_window(caplog):
    """A long-context model scores a short test text as one window: nothing to pair, and the log says what to set."""
    with caplog.at_level("WARNING"):
        table, _ = collect_method_result.entrypoint(
            "full", {"trainable_parameters": 1}, {"test_perplexity": 7.0}, {"test_rougeL": 0.2},
            per_item_perplexity={"w": 7.0}, baseline_per_item_perplexity={"w": 8.0})
    assert "nll_vs_untuned" not in table
    assert "full: no paired NLL test against the untuned model: fewer than 2 perplexity windows" in caplog.text
    assert "evaluation.perplexity_block_size" in caplog.text
