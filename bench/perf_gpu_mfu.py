"""GPU: model FLOPs utilisation of a ~0.5 B causal LM in bf16, and QLoRA vs full fine-tuning peak memory.

The model has Qwen2.5-0.5B's shape, built from a config with a seed (hidden 896, 24 layers, 14 query / 2 key-value
heads, SwiGLU 4,864, a 151,936-row tied embedding: 494 M parameters); the tokenizer is our offline byte-level BPE
trained on the text (its ids are a subset of the embedding rows, as a hub tokenizer's are). Text: the WikiText-2
validation split from ../shared/evaldata, or the demo corpus when that folder is absent (throughput does not
depend on the words). Training goes through the ``causal_lm_training`` path (``causal_lm_setup``: documents packed
into full blocks, transformers ``Trainer``, bf16 autocast on a bf16 GPU, SDPA attention).

MFU = tokens/s × 6 × parameters ÷ peak bf16 FLOP/s (``finetune.generation.throughput``); tokens/s is the
steady state, from the median interval between optimizer steps after the first ``--warmup-steps`` (CUDA
synchronised at each step end). The peak comes from a table by device name (``--peak-tflops`` overrides it).
Memory: ``torch.cuda.max_memory_allocated`` over training, QLoRA (4-bit NF4 base, LoRA r=16 on the attention
projections) against full fine-tuning, same batch, block size and gradient checkpointing, each in a fresh process.
Targets: MFU ≥ 40 %; QLoRA peak ≤ 35 % of full fine-tuning's. With ``--chunked-loss N`` both memory runs are
repeated with ``training.chunked_loss_tokens: N`` (``finetune.generation.chunked_loss``: no full fp32 logits, which
are 8 × 1024 × 151,936 × 4 B = 5.0 GB per copy at the default batch), for QLoRA ÷ full with it as well.

Without CUDA it prints one line and exits 0; it writes a results section saying it did not run, unless the
results already hold a GPU measurement, which it leaves alone.

Run: ``python -m bench.perf_gpu_mfu [--peak-tflops 989.4] [--steps 40] [--batch 8] [--block 1024]
[--chunked-loss 1024]`` on a CUDA machine (QLoRA needs bitsandbytes: ``pip install -e '.[gpu]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from bench import perf
from bench.perf import machine, write_result
from finetune.generation.throughput import model_flops_utilisation, peak_bf16_tflops

WIKITEXT = Path(__file__).resolve().parents[1].parent / "shared" / "evaldata" / "wikitext-2" / "tokens" / "valid.txt"
# Qwen2.5-0.5B's config.json shape (the weights are random: throughput and memory do not depend on them).
QWEN2_05B = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
             "intermediate_size": 4864, "vocab_size": 151_936, "max_position_embeddings": 32_768,
             "tie_word_embeddings": True, "rope_theta": 1_000_000.0}
TOKENIZER_VOCAB = 8000
MFU_TARGET = 0.40
MEMORY_TARGET = 0.35


def texts(limit_lines: int | None = None) -> tuple[list[str], str]:
    """Documents to train on and one line on where they come from."""
    from finetune.data.demo_text import write_demo_corpus
    from finetune.data.text import read_text_lines, split_documents

    if WIKITEXT.is_file():
        path, name = WIKITEXT, "WikiText-2 validation split"
    else:
        path, name = write_demo_corpus(tempfile.mkdtemp(prefix="mfu_text_"), 200), "demo corpus"
    lines = read_text_lines(path)[:limit_lines]
    return split_documents(lines, "wikitext"), name


def build_model_dir(shape: dict, documents: list[str], out: Path, tokenizer_vocab: int, seed: int = 0) -> Path:
    """Write a randomly initialised Qwen2-shaped model (seeded) and a BPE tokenizer trained on ``documents``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from finetune.models.causal import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(documents, tokenizer_vocab, shape["max_position_embeddings"])
    if len(tokenizer) > shape["vocab_size"]:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the model's {shape['vocab_size']}")
    config = Qwen2Config(**shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # initialising 0.5 B parameters on the GPU takes a second, on the CPU a minute
        model = Qwen2ForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class StepTimer:
    """Seconds between consecutive optimizer-step ends (everything a step costs: data, forward, backward, update)."""

    def __init__(self, synchronize):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                synchronize()
                timer.last = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                synchronize()
                now = time.perf_counter()
                timer.intervals.append(now - timer.last)
                timer.last = now

        self.intervals: list[float] = []
        self.last = 0.0
        self.callback = Callback()

    def steady_seconds(self, warmup_steps: int) -> float:
        """Median step time after the first ``warmup_steps`` (all steps when there are no more)."""
        steady = self.intervals[warmup_steps:] or self.intervals
        return statistics.median(steady)


def measure(model_dir: Path, documents: list[str], method: str, steps: int, batch: int, block: int,
            gradient_checkpointing: bool, warmup_steps: int, work: Path, profile: bool = False,
            chunked_loss: int | None = None) -> dict:
    """Train ``steps`` optimizer steps through ``causal_lm_setup`` and measure steady tokens/s and peak memory
    (``chunked_loss``: ``training.chunked_loss_tokens``).

    With ``profile`` the run is traced by the torch profiler and ``profile`` holds its top entries by self device
    time (self CPU time on CPU); the timings of a traced run are not the ones to report.
    """
    from finetune.generation.training import PeakMemory, causal_lm_setup
    from finetune.params import CausalLmParams, CheckpointParams, GenerationTrainingParams, LocalModel

    method_spec = {"name": "qlora", "r": 16, "lora_alpha": 32} if method == "qlora" else {"name": method}
    training = GenerationTrainingParams(max_steps=steps, per_device_batch_size=batch, learning_rate=1e-4,
                                        warmup_ratio=0.0, logging_steps=max(steps, 1),
                                        gradient_checkpointing=gradient_checkpointing,
                                        chunked_loss_tokens=chunked_loss,
                                        # No checkpoints: a measurement is never resumed, and the Trainer's save at
                                        # the last step would write ~6 GB (weights + Adam state) into the timing.
                                        checkpoints=CheckpointParams(every_steps=None))
    params = CausalLmParams(model=LocalModel(path=model_dir), method=method_spec, training=training,
                            block_size=block)
    setup = causal_lm_setup(pd.DataFrame({"text": documents}), pd.DataFrame({"text": []}), params, work)
    device = setup.placement.device
    timer = StepTimer(torch.cuda.synchronize if device == "cuda" else lambda: None)
    setup.trainer.add_callback(timer.callback)
    tracer = contextlib.nullcontext()
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        tracer = torch_profile(activities=activities)
    with PeakMemory(device) as memory, tracer:
        setup.trainer.train()
    seconds = timer.steady_seconds(warmup_steps)
    model = setup.trainer.model
    result = {
        "method": method, "device": device, "precision": setup.placement.precision,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps": setup.trainer.state.global_step, "batch": batch, "block": block,
        "gradient_checkpointing": gradient_checkpointing, "chunked_loss_tokens": chunked_loss,
        "step_seconds_median": seconds,
        "tokens_per_second": batch * block / seconds, "peak_memory_mb": round(memory.peak_mb, 1),
    }
    if profile:
        key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
        result["profile"] = tracer.key_averages().table(sort_by=key, row_limit=15)
    del setup, model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def mfu_summary(full: dict, peak_tflops: float) -> dict:
    """MFU of the full fine-tuning run at a given peak (the model's own parameters, tied embedding counted once)."""
    return {"peak_tflops": peak_tflops, "flops_per_token": 6 * full["parameters"],
            "mfu": model_flops_utilisation(full["tokens_per_second"], full["parameters"], peak_tflops)}


def _measure_in_subprocess(args: argparse.Namespace, model_dir: Path, method: str, gradient_checkpointing: bool,
                           work: Path, profile: bool = False, chunked_loss: int | None = None) -> dict:
    # A fresh process per run: the CUDA caching allocator and leftovers of one run cannot inflate the next's peak.
    out = work / f"{method}_{int(gradient_checkpointing)}_{int(profile)}_{chunked_loss or 0}.json"
    # A traced run, and a chunked-loss run (for its memory), need only a few steps after the warm-up.
    steps = min(args.steps, args.warmup_steps + 3) if profile or chunked_loss else args.steps
    cmd = [sys.executable, "-m", "bench.perf_gpu_mfu", "--one", method, "--model-dir", str(model_dir),
           "--out", str(out), "--steps", str(steps), "--batch", str(args.batch), "--block", str(args.block),
           "--warmup-steps", str(args.warmup_steps)] + (["--gradient-checkpointing"] if gradient_checkpointing else [])
    cmd += ["--profile"] if profile else []
    cmd += ["--chunked-loss", str(chunked_loss)] if chunked_loss else []
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of this GPU (default: from the table)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--chunked-loss", type=int, metavar="N",
                        help="also measure both memory runs with training.chunked_loss_tokens N")
    parser.add_argument("--one", choices=["full", "qlora"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gradient-checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # a single measurement, in the subprocess the main run started
        documents, _ = texts()
        with tempfile.TemporaryDirectory(prefix="mfu_") as scratch:
            result = measure(args.model_dir, documents, args.one, args.steps, args.batch, args.block,
                             args.gradient_checkpointing, args.warmup_steps, Path(scratch), args.profile,
                             args.chunked_loss)
        args.out.write_text(json.dumps(result))
        return 0
    if not torch.cuda.is_available():
        return not_run_here()
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or peak_bf16_tflops(name)
    if peak is None:
        print(f"{name}: no bf16 peak in the table; pass --peak-tflops", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="perf_gpu_mfu_") as scratch:  # the 2 GB model goes with it
        work = Path(scratch)
        documents, source = texts()
        model_dir = build_model_dir(QWEN2_05B, documents, work / "model", TOKENIZER_VOCAB)
        full = _measure_in_subprocess(args, model_dir, "full", False, work)
        memory = {method: _measure_in_subprocess(args, model_dir, method, True, work) for method in ("full", "qlora")}
        ratio = memory["qlora"]["peak_memory_mb"] / memory["full"]["peak_memory_mb"]
        chunked = {method: _measure_in_subprocess(args, model_dir, method, True, work, chunked_loss=args.chunked_loss)
                   for method in ("full", "qlora")} if args.chunked_loss else None
        mfu = mfu_summary(full, peak)
        # A missed target comes with where the time goes: a traced run of a few steps.
        profile = None if mfu["mfu"] >= MFU_TARGET else _measure_in_subprocess(args, model_dir, "full", False, work,
                                                                               profile=True)["profile"]
    data = {
        "machine": machine(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cuda": True, "gpu": name,
        "text": source, "model_shape": QWEN2_05B, "throughput": full, **mfu,
        "memory_runs": memory, "qlora_over_full_memory": ratio, "chunked_loss_tokens": args.chunked_loss,
        "chunked_memory_runs": chunked,
        "chunked_qlora_over_full_memory": chunked and chunked["qlora"]["peak_memory_mb"] / chunked["full"][
            "peak_memory_mb"],
        "mfu_target": MFU_TARGET, "memory_target": MEMORY_TARGET, "profile": profile,
    }
    path = write_result("gpu_mfu", data, markdown(data))
    print(path.read_text())
    return 0


def not_run_here() -> int:
    """No CUDA: one line on stdout; a results section saying so, unless a GPU measurement is already there."""
    print("perf_gpu_mfu: no CUDA GPU on this machine; not run (it needs one)")
    previous = perf.RESULTS / "perf_gpu_mfu.json"
    if previous.is_file() and json.loads(previous.read_text()).get("cuda"):
        return 0
    text = ("## GPU model FLOPs utilisation and QLoRA memory (`python -m bench.perf_gpu_mfu`)\n\n"
            f"**Machine:** {machine()}\n\n"
            "Not run here: this machine has no CUDA GPU. On one, the benchmark trains a Qwen2.5-0.5B-shaped model "
            "(494 M parameters) through the `causal_lm_training` path in bf16 and reports MFU (target ≥ 40 %) and "
            "QLoRA's peak memory as a share of full fine-tuning's (target ≤ 35 %), with `--chunked-loss N` also with "
            "the chunked causal-LM loss. No numbers are reported without a measurement.")
    write_result("gpu_mfu", {"cuda": False, "run": False}, text)
    return 0


def markdown(data: dict) -> str:
    full, memory = data["throughput"], data["memory_runs"]
    mfu_met = "met" if data["mfu"] >= data["mfu_target"] else "missed"
    memory_met = "met" if data["qlora_over_full_memory"] <= data["memory_target"] else "missed"
    return "\n".join([
        "## GPU model FLOPs utilisation and QLoRA memory (`python -m bench.perf_gpu_mfu`)",
        "",
        f"**Machine:** {data['machine']} ({data['date']})",
        "",
        f"A Qwen2.5-0.5B-shaped model ({full['parameters'] / 1e6:.0f} M parameters, random weights, seeded) trains "
        f"through the `causal_lm_training` path on the {data['text']} in blocks of {full['block']} tokens, batch "
        f"{full['batch']}, {full['precision']} autocast, for {full['steps']} steps. MFU = tokens/s × 6 × parameters ÷ "
        f"{data['peak_tflops']:g} TFLOP/s (dense bf16 peak of the {data['gpu']}); tokens/s from the median step "
        "after the warm-up steps. Peak memory is `torch.cuda.max_memory_allocated` during training, each run in a "
        "fresh process, both with gradient checkpointing.",
        "",
        "| measurement | value | target |",
        "|---|---|---|",
        f"| tokens/s (full fine-tuning, steady state) | {full['tokens_per_second']:,.0f} | |",
        f"| MFU | {100 * data['mfu']:.1f} % | ≥ {100 * data['mfu_target']:.0f} % — **{mfu_met}** |",
        f"| peak memory, full fine-tuning | {memory['full']['peak_memory_mb']:,.0f} MiB | |",
        f"| peak memory, QLoRA (r=16, NF4) | {memory['qlora']['peak_memory_mb']:,.0f} MiB | |",
        f"| QLoRA ÷ full | {100 * data['qlora_over_full_memory']:.1f} % | ≤ {100 * data['memory_target']:.0f} % — "
        f"**{memory_met}** |",
        *(_chunked_rows(data) if data.get("chunked_memory_runs") else []),
        *(["", "Where the time goes (torch profiler, a few full fine-tuning steps, top self device time):", "",
           "```", data["profile"].strip(), "```"] if data["profile"] else []),
    ])


def _chunked_rows(data: dict) -> list[str]:
    chunked, memory, n = data["chunked_memory_runs"], data["memory_runs"], data["chunked_loss_tokens"]
    met = "met" if data["chunked_qlora_over_full_memory"] <= data["memory_target"] else "missed"
    rows = []
    for method, name in (("full", "full fine-tuning"), ("QLoRA", "QLoRA")):
        run, plain = chunked[method.lower()], memory[method.lower()]
        rows += [f"| peak memory, {name}, chunked loss ({n:,} positions) | {run['peak_memory_mb']:,.0f} MiB "
                 f"({100 * run['peak_memory_mb'] / plain['peak_memory_mb']:.0f} % of the model's loss) | |",
                 f"| step time, {name}, chunked ÷ model's loss (median after the warm-up) | "
                 f"{run['step_seconds_median'] / plain['step_seconds_median']:.2f} | |"]
    return rows + [f"| QLoRA ÷ full, both with the chunked loss | {100 * data['chunked_qlora_over_full_memory']:.1f} % "
                   f"| ≤ {100 * data['memory_target']:.0f} % — **{met}** |"]


if __name__ == "__main__":
    sys.exit(main())
