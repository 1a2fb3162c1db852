"""The GPU MFU benchmark's code path on CPU at a tiny size, its arithmetic, and its no-CUDA behaviour."""

import json

import pytest

from bench import perf
from bench.perf_gpu_mfu import QWEN2_05B, build_model_dir, main, markdown, measure, mfu_summary

TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "intermediate_size": 32, "vocab_size": 600, "max_position_embeddings": 64, "tie_word_embeddings": True}
DOCS = [f"= Article {i} =\nThe river {i} flows past the town of Vel{i} and the hills of Dor{i} . " * 6
        for i in range(20)]


def test_tiny_qwen2_trains_through_the_causal_lm_path(tmp_path):
    """Parameters of the tiny Qwen2 shape (hidden 16, head dim 8, one key-value head, tied embedding of 600 rows):
    per layer q 16·16+16 = 272, k and v 16·8+8 = 136 each, o 16·16 = 256, MLP 3·16·32 = 1,536, two norms 32
    → 2,368; two layers 4,736 + embedding 600·16 = 9,600 + final norm 16 = 14,352.
    """
    model_dir = build_model_dir(TINY, DOCS, tmp_path / "model", tokenizer_vocab=400)
    result = measure(model_dir, DOCS, "full", steps=4, batch=2, block=32, gradient_checkpointing=False,
                     warmup_steps=1, work=tmp_path / "work")
    assert (result["device"], result["precision"], result["steps"]) == ("cpu", "fp32", 4)
    assert result["parameters"] == result["trainable_parameters"] == 14_352
    assert result["tokens_per_second"] == pytest.approx(2 * 32 / result["step_seconds_median"])
    assert result["peak_memory_mb"] >= 0.0
    mfu = mfu_summary(result, peak_tflops=1.0)
    assert mfu["flops_per_token"] == 6 * 14_352
    assert mfu["mfu"] == pytest.approx(result["tokens_per_second"] * 6 * 14_352 / 1e12)
    traced = measure(model_dir, DOCS, "full", steps=2, batch=2, block=32, gradient_checkpointing=False,
                     warmup_steps=1, work=tmp_path / "traced", profile=True)
    assert "Self CPU" in traced["profile"] and "aten::" in traced["profile"]
    chunked = measure(model_dir, DOCS, "full", steps=2, batch=2, block=32, gradient_checkpointing=True,
                      warmup_steps=1, work=tmp_path / "chunked", chunked_loss=24)
    assert (chunked["chunked_loss_tokens"], chunked["steps"]) == (24, 2)


def test_the_chunked_loss_rows_compare_each_method_with_its_own_run():
    """full 1,000 → 600 MiB (60 %), QLoRA 400 → 200 MiB (50 %): QLoRA ÷ full 33.3 % with the chunked loss."""
    run = {"parameters": 10, "block": 1024, "batch": 8, "precision": "bf16", "steps": 25, "tokens_per_second": 1.0}
    memory = {"full": {"peak_memory_mb": 1000.0, "step_seconds_median": 1.0},
              "qlora": {"peak_memory_mb": 400.0, "step_seconds_median": 2.0}}
    chunked = {"full": {"peak_memory_mb": 600.0, "step_seconds_median": 1.1},
               "qlora": {"peak_memory_mb": 200.0, "step_seconds_median": 2.4}}
    data = {"machine": "m", "date": "d", "text": "t", "gpu": "g", "throughput": run, "peak_tflops": 1.0, "mfu": 0.5,
            "mfu_target": 0.4, "memory_target": 0.35, "memory_runs": memory, "qlora_over_full_memory": 0.4,
            "profile": None, "chunked_loss_tokens": 1024, "chunked_memory_runs": chunked,
            "chunked_qlora_over_full_memory": 200 / 600}
    text = markdown(data)
    assert ("| peak memory, full fine-tuning, chunked loss (1,024 positions) | 600 MiB (60 % of the model's loss)"
            in text)
    assert "| step time, QLoRA, chunked ÷ model's loss (median after the warm-up) | 1.20 |" in text
    assert "| QLoRA ÷ full, both with the chunked loss | 33.3 % | ≤ 35 % — **met** |" in text
    assert "chunked" not in markdown({**data, "chunked_memory_runs": None})


def test_the_gpu_shape_is_qwen2_5_0_5b():
    """Qwen2.5-0.5B has 494,032,768 parameters; the shape is built on the meta device (no memory)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(**QWEN2_05B))
    assert sum(p.numel() for p in model.parameters()) == 494_032_768


def test_without_cuda_it_says_so_and_keeps_a_gpu_measurement(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(perf, "RESULTS", tmp_path)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main([]) == 0
    assert capsys.readouterr().out.count("\n") == 1
    assert "Not run here" in (tmp_path / "perf_gpu_mfu.md").read_text()
    assert json.loads((tmp_path / "perf_gpu_mfu.json").read_text())["run"] is False
    (tmp_path / "perf_gpu_mfu.json").write_text(json.dumps({"cuda": True, "mfu": 0.41}))
    (tmp_path / "perf_gpu_mfu.md").write_text("## measured on a GPU\n")
    assert main([]) == 0
    assert (tmp_path / "perf_gpu_mfu.md").read_text() == "## measured on a GPU\n"
