"""CPU: peak memory and time of one forward + backward with the model's own loss vs the chunked causal-LM loss.

transformers' ``ForCausalLMLoss`` builds the ``[batch × block × vocab]`` logits and upcasts them to fp32;
``finetune.generation.chunked_loss`` projects ``--chunk`` positions at a time and recomputes each chunk in backward.
TRL's fused LM head (``add_fused_lm_head``, what ``SFTTrainer`` and ``DPOTrainer`` use; tiles of 4,096 tokens ×
32,768 vocabulary columns) is the library alternative and runs alongside.

Shapes (random weights from a config with a seed, fp32, tied embeddings): ``smollm2`` is SmolLM2-135M's (Llama,
hidden 576, 9 / 3 heads, SwiGLU 1,536, vocabulary 49,152; ``--layers`` of its 30 layers), ``qwen`` is Qwen2.5-0.5B's
(hidden 896, 14 / 2 heads, SwiGLU 4,864, vocabulary 151,936) with 2 of its 24 layers, so the head dominates. Input:
``--batch × --block`` seeded random token ids, labels = inputs (every position scored).

Each measurement is one forward + backward in a fresh process (``--one``): peak RSS is ``getrusage``'s
``ru_maxrss`` at the end, and the step's own peak is that minus the RSS just before the step (weights and the
process are already there; the model is built before and nothing else runs). Variants alternate within each
repetition (model, chunked, TRL, model, ...), so a background load hits them alike; the losses must agree.

Run: ``python -m bench.perf_chunked_loss [--shapes smollm2 qwen] [--layers 8] [--batch 4] [--block 512]
[--chunk 256] [--repetitions 3]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench.perf import machine, summary, write_result

SHAPES = {
    # SmolLM2-135M's config.json (30 layers; --layers keeps the first n).
    "smollm2": {"class": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49_152,
                "max_position_embeddings": 8192, "rope_theta": 100_000.0, "tie_word_embeddings": True},
    # Qwen2.5-0.5B's config.json with 2 of its 24 layers: the 151,936-row head is most of the work.
    "qwen": {"class": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 2,
             "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151_936,
             "max_position_embeddings": 32_768, "rope_theta": 1_000_000.0, "tie_word_embeddings": True},
}
VARIANTS = ("model", "chunked", "trl_fused")
SMOLLM2_LAYERS = 8  # of 30: one step of all 30 takes minutes on 2 shared cores; the head's cost does not change


def build_model(shape: str, layers: int | None = None, seed: int = 0):
    """A randomly initialised (seeded) fp32 model of one of :data:`SHAPES`, in training mode."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    spec = dict(SHAPES[shape])
    family = spec.pop("class")
    if layers is not None:
        spec["num_hidden_layers"] = layers
    config_class, model_class = (LlamaConfig, LlamaForCausalLM) if family == "llama" else (Qwen2Config,
                                                                                          Qwen2ForCausalLM)
    torch.manual_seed(seed)
    return model_class(config_class(**spec, bos_token_id=0, eos_token_id=0)).train()


def loss_function(model, variant: str, chunk: int):
    """``ids -> loss`` for one variant (imports and TRL's patch happen here, outside the timed step)."""
    if variant == "model":
        return lambda ids: model(input_ids=ids, labels=ids, use_cache=False).loss
    if variant == "chunked":
        from finetune.generation.chunked_loss import causal_lm_parts, chunked_causal_lm_loss

        body, head = causal_lm_parts(model)
        return lambda ids: chunked_causal_lm_loss(body(input_ids=ids, use_cache=False).last_hidden_state,
                                                  head.weight, ids, chunk, head.bias)
    if variant == "trl_fused":
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)
        return lambda ids: model(input_ids=ids, labels=ids, fused_lm_head=True).loss
    raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure_one(shape: str, layers: int | None, variant: str, batch: int, block: int, chunk: int) -> dict:
    """Build the model, then time one step of ``variant`` and read the process's peak RSS around it."""
    model = build_model(shape, layers)
    ids = torch.randint(model.config.vocab_size, (batch, block), generator=torch.Generator().manual_seed(1))
    compute = loss_function(model, variant, chunk)
    gc.collect()
    before = _rss_mb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    loss = compute(ids)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "loss": loss.item(), "seconds": seconds, "rss_before_mb": before,
            "peak_rss_before_step_mb": peak_before, "peak_rss_mb": peak, "step_peak_mb": peak - before,
            "parameters": sum(p.numel() for p in model.parameters()), "layers": model.config.num_hidden_layers}


def _in_subprocess(args, shape: str, variant: str, work: Path) -> dict:
    out = work / f"{shape}_{variant}.json"
    cmd = [sys.executable, "-m", "bench.perf_chunked_loss", "--one", variant, "--shapes", shape, "--batch",
           str(args.batch), "--block", str(args.block), "--chunk", str(args.chunk), "--out", str(out)]
    cmd += ["--layers", str(args.layers or SMOLLM2_LAYERS)] if shape == "smollm2" else []
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--layers", type=int, help="layers of the shape (default: smollm2 8 of its 30, qwen 2)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # one measurement, in the fresh process the main run started
        result = measure_one(args.shapes[0], args.layers, args.one, args.batch, args.block, args.chunk)
        args.out.write_text(json.dumps(result))
        return 0
    started, cpu_started, load_before = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    runs: dict[str, dict[str, list[dict]]] = {shape: {v: [] for v in VARIANTS} for shape in args.shapes}
    with tempfile.TemporaryDirectory(prefix="perf_chunked_loss_") as scratch:
        for _ in range(args.repetitions):
            for shape in args.shapes:
                for variant in VARIANTS:
                    result = _in_subprocess(args, shape, variant, Path(scratch))
                    runs[shape][variant].append(result)
                    print(f"{shape} {variant}: {result['seconds']:.1f} s, step peak {result['step_peak_mb']:,.0f} MB, "
                          f"loss {result['loss']:.5f}", flush=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    data = {
        "machine": machine(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpu_count": os.cpu_count(),
        "settings": {"batch": args.batch, "block": args.block, "chunk": args.chunk, "repetitions": args.repetitions,
                     "smollm2_layers": args.layers or SMOLLM2_LAYERS},
        "shapes": {shape: SHAPES[shape] for shape in args.shapes},
        "runs": runs,
        "summary": {shape: summarise(per_variant) for shape, per_variant in runs.items()},
        "benchmark_wall_seconds": round(time.perf_counter() - started, 1),
        "benchmark_cpu_seconds": round(time.process_time() - cpu_started + children.ru_utime + children.ru_stime, 1),
    }
    path = write_result("chunked_loss", data, markdown(data))
    print(path.read_text())
    return 0


def summarise(per_variant: dict[str, list[dict]]) -> dict:
    """Per variant: seconds and step peak (min / median / max), total peak; ratios to the model's own loss."""
    out = {}
    for variant, results in per_variant.items():
        out[variant] = {"seconds": summary([r["seconds"] for r in results]),
                        "step_peak_mb": summary([r["step_peak_mb"] for r in results]),
                        "peak_rss_mb": summary([r["peak_rss_mb"] for r in results]),
                        "rss_before_mb": statistics.median(r["rss_before_mb"] for r in results),
                        "loss": results[0]["loss"], "parameters": results[0]["parameters"],
                        "layers": results[0]["layers"]}
    model = out["model"]
    for variant in out:
        out[variant]["step_peak_ratio"] = out[variant]["step_peak_mb"]["median"] / model["step_peak_mb"]["median"]
        out[variant]["peak_rss_ratio"] = out[variant]["peak_rss_mb"]["median"] / model["peak_rss_mb"]["median"]
        out[variant]["time_ratio"] = out[variant]["seconds"]["median"] / model["seconds"]["median"]
        out[variant]["loss_difference"] = out[variant]["loss"] - model["loss"]
    return out


NAMES = {"model": "model's own loss (`ForCausalLMLoss`)", "chunked": "chunked (`chunked_causal_lm_loss`)",
         "trl_fused": "TRL fused LM head (`add_fused_lm_head`)"}


def markdown(data: dict) -> str:
    s = data["settings"]
    tokens = s["batch"] * s["block"]
    lines = [
        "## Chunked causal-LM loss: memory and time of one step on CPU (`python -m bench.perf_chunked_loss`)",
        "",
        f"**Machine:** {data['machine']} ({data['date']}). One-minute load average {data['load_average'][0]:g} at "
        f"the start and {data['load_average'][1]:g} at the end on {data['cpu_count']} cores: "
        + ("the cores were shared with other jobs, so the times are noisy; compare them within a repetition."
           if max(data["load_average"]) > data["cpu_count"] / 2 else "an otherwise quiet machine."),
        "",
        f"One forward + backward of a randomly initialised fp32 model on {s['batch']} × {s['block']} = {tokens:,} "
        f"random tokens, each variant in a fresh process, {s['repetitions']} alternating repetitions; chunks of "
        f"{s['chunk']} positions. Step peak = `ru_maxrss` after the step − RSS just before it (the weights are "
        "already there); median (min–max).",
        "",
        "| shape | loss computed by | step peak MiB | ÷ model's | peak RSS MiB | s per step | ÷ model's "
        "| loss − model's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for shape, per_variant in data["summary"].items():
        spec = data["shapes"][shape]
        model = per_variant["model"]
        label = (f"{shape}: {model['layers']} × hidden {spec['hidden_size']}, vocab {spec['vocab_size']:,} "
                 f"({model['parameters'] / 1e6:.0f} M)")
        for variant, r in per_variant.items():
            peak, sec = r["step_peak_mb"], r["seconds"]
            lines.append(
                f"| {label} | {NAMES[variant]} | {peak['median']:,.0f} ({peak['min']:,.0f}–{peak['max']:,.0f}) | "
                f"{r['step_peak_ratio']:.2f} | {r['peak_rss_mb']['median']:,.0f} | {sec['median']:.1f} "
                f"({sec['min']:.1f}–{sec['max']:.1f}) | {r['time_ratio']:.2f} | {r['loss_difference']:+.1e} |")
            label = ""
    fp32_logits = {shape: tokens * data["shapes"][shape]["vocab_size"] * 4 / 2**20 for shape in data["summary"]}
    gradients = {shape: runs["model"]["parameters"] * 4 / 2**20 for shape, runs in data["summary"].items()}
    lines += ["", "One fp32 copy of the full logits is " + ", ".join(
        f"{shape} {mb:,.0f} MiB" for shape, mb in fp32_logits.items()) + f" ({tokens:,} tokens × vocabulary × 4 B). "
        "Every step peak also holds what all variants share: the parameters' fp32 gradients (" + ", ".join(
        f"{shape} {mb:,.0f} MiB" for shape, mb in gradients.items()) + ") and the body's activations. "
        "TRL's fused head runs here without Triton (its torch fallback, tiles of 4,096 tokens × 32,768 columns); on "
        "CUDA it runs Triton kernels, which this CPU benchmark does not measure. "
        f"The whole benchmark took {data['benchmark_wall_seconds']:.0f} s of wall time and "
        f"{data['benchmark_cpu_seconds']:.0f} CPU-seconds."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
