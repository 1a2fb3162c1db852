"""train_intent_generator through ``.entrypoint()``: SFT of the RAG generator on (prompt → intent) examples,
with the generator's template and no validation split."""

import steps.train.train_intent_generator as module
from finetune.data.instructions import examples_frame
from finetune.models.causal import build_tiny_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import LocalGenerator, TinyGpt2Model
from steps.train.train_intent_generator import train_intent_generator

EXAMPLES = examples_frame((f"q{i}", [{"role": "user", "content": f"[1] passage {i} || capital of country {i}"},
                                    {"role": "assistant", "content": f"find the capital of country {i}"}])
                          for i in range(8))


def test_the_generator_trains_with_lora_and_keeps_the_base_description(tmp_path, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    texts = (EXAMPLES["prompt"] + EXAMPLES["response"]).tolist()
    path = build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=64), tmp_path / "base", texts)
    base = ModelDirectory(path, "causal_lm", "tiny generator", 1)
    generator = LocalGenerator(sft={"model": {"kind": "tiny_gpt2"}, "method": {"name": "lora", "r": 2},
                                    "training": {"max_steps": 2, "per_device_batch_size": 4, "max_length": 48,
                                                 "logging_steps": 1, "device": "cpu", "precision": "fp32"}})
    model_dir, log = train_intent_generator.entrypoint(base, EXAMPLES, generator)

    facts = recorded[0]
    assert facts["method"] == "lora" and facts["steps"] == 2
    assert 0 < facts["trainable_parameters"] < facts["total_parameters"] == model_dir.num_parameters
    assert "validation_loss" not in facts and not any("eval_loss" in e for e in log)  # no validation split
    assert model_dir.kind == "causal_lm" and model_dir.base_model == "tiny generator"
