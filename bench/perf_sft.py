"""SFT training throughput: our ``sft_training`` path against TRL's ``SFTTrainer`` with its defaults.

Data: the real Alpaca records in ../shared/evaldata/alpaca (the first 100 of ``alpaca_data.json`` and the 175
self-instruct seed tasks that generated Alpaca, each task's first instance), 275 instruction/response pairs
rendered with the Alpaca-style template; a seeded 1/8 (34 pairs) is held out for validation. Model: a Llama-style
causal LM built from a config with a seed (hidden 192, 4 layers, 4 heads, SwiGLU 512, 2.5 M parameters) and our
offline byte-level BPE tokenizer (2,000 tokens) trained on the training pairs, so compute dominates a step on CPU.

Both sides train the same starting weights on the same examples for the same number of epochs, with the same
per-device batch size, learning rate (linear decay, no warm-up, no weight decay: TRL's defaults), maximum length,
completion-only loss and precision (fp32 on CPU, bf16 on a bf16 GPU); everything else is TRL's ``SFTConfig``
default (random batches padded to their longest example, gradient checkpointing on). A third arm is TRL with
gradient checkpointing off, to show how much of the gap is padding and how much is recomputation. Ours is
``finetune.generation.training.sft_setup`` with its defaults (length-grouped batches, pre-tokenized examples, no
gradient checkpointing).

Training tokens/s counts the tokens that carry loss (completion tokens, labels other than -100; padding and prompt
excluded) over ``trainer.train()`` wall time. Both sides see the same tokens: the count is taken from each
trainer's prepared dataset and checked equal. Validation loss is the mean completion-token NLL of the 34
held-out pairs (``token_logprobs``), computed the same way for every trained model.

Run: ``python -m bench.perf_sft [--repetitions 3] [--epochs 1]`` (needs ../shared/evaldata).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from bench.perf import alternate, machine, rate_summary, summary, write_result
from finetune.data.instructions import (
    examples_frame,
    normalize_record,
    read_instruction_file,
    render_frame,
    split_frame,
)
from finetune.generation.evaluation import token_logprobs
from finetune.generation.throughput import loss_tokens, tokenize_examples
from finetune.generation.training import sft_setup
from finetune.models.causal import resolve_causal_model
from finetune.params import GenerationTrainingParams, LocalModel, SftParams, TinyLlamaModel

ALPACA = Path(__file__).resolve().parents[1].parent / "shared" / "evaldata" / "alpaca"
TEMPLATE = "Below is an instruction that describes a task. Write a response that appropriately completes the " \
           "request.\n\n### Instruction:\n{prompt}\n\n### Response:\n"
MODEL = TinyLlamaModel(hidden_size=192, num_layers=4, num_heads=4, intermediate_size=512, vocab_size=2000,
                       max_position_embeddings=256, seed=0)
BATCH = 8
LEARNING_RATE = 1e-3  # a random-init model: TRL's 2e-5 would leave the loss near ln(vocab) on both sides
MAX_LENGTH = 256  # keeps the run within its 5-minute budget; the share of pairs cut is in the results
TARGET = 1.5


def load_pairs() -> pd.DataFrame:
    """The 100 Alpaca records and the 175 seed tasks (first instance each) as one example table."""
    alpaca = read_instruction_file(ALPACA / "alpaca_tiny_first100.json")
    seeds = []
    for line in (ALPACA / "seed_tasks.jsonl").read_text(encoding="utf-8").splitlines():
        task = json.loads(line)
        instance = task["instances"][0]
        record = {"instruction": task["instruction"], "input": instance["input"], "output": instance["output"]}
        seeds.append((task["id"], normalize_record(record, f"seed_tasks.jsonl:{task['id']}")))
    return pd.concat([alpaca, examples_frame(seeds)], ignore_index=True)


def validation_loss(model, tokenizer, rendered: pd.DataFrame, max_length: int) -> float:
    """Mean NLL of the completion tokens of held-out pairs (prompt tokens condition, they are not scored)."""
    rows = tokenize_examples(tokenizer, rendered["prompt"], rendered["completion"], max_length, True).columns
    scored = [sum(label != -100 for label in labels[1:]) for labels in rows["labels"]]
    logps = token_logprobs(model, rows["input_ids"], batch_size=BATCH, num_scored=scored)
    return -sum(sum(values) for values in logps) / sum(scored)


def processed_tokens(trainer) -> int:
    """Tokens one epoch pushes through the model, padding included (the sampler's batches, collated)."""
    return sum(batch["input_ids"].numel() for batch in trainer.get_train_dataloader())


class Arm:
    """One side of the comparison: builds a fresh trainer from the saved starting weights, trains, keeps timings."""

    def __init__(self, name: str, build):
        self.name, self.build = name, build
        self.setup_seconds: list[float] = []
        self.train_seconds: list[float] = []
        self.models: list = []
        self.trainer = None

    def __call__(self, max_steps: int = -1, keep: bool = True) -> None:
        start = time.perf_counter()
        trainer = self.build(max_steps)
        setup = time.perf_counter() - start
        start = time.perf_counter()
        trainer.train()
        train = time.perf_counter() - start
        if keep:
            self.setup_seconds.append(setup)
            self.train_seconds.append(train)
            self.models.append(trainer.model)
            self.trainer = trainer


def make_arms(model_dir: Path, train: pd.DataFrame, rendered_train: pd.DataFrame, work: Path, epochs: float,
              bf16: bool) -> list[Arm]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    raw = Dataset.from_dict({"prompt": rendered_train["prompt"].tolist(),
                             "completion": rendered_train["completion"].tolist()})

    def trl(gradient_checkpointing: bool | None):
        def build(max_steps: int):
            # SFTConfig defaults, except what must be equal and what only concerns output (no saving, no tqdm).
            equal = dict(per_device_train_batch_size=BATCH, learning_rate=LEARNING_RATE, num_train_epochs=epochs,
                         max_steps=max_steps, max_length=MAX_LENGTH, bf16=bf16, report_to="none",
                         save_strategy="no", disable_tqdm=True, output_dir=str(work / "trl"))
            if gradient_checkpointing is not None:
                equal["gradient_checkpointing"] = gradient_checkpointing
            model = AutoModelForCausalLM.from_pretrained(model_dir)
            return SFTTrainer(model=model, args=SFTConfig(**equal), train_dataset=raw, processing_class=tokenizer)
        return build

    def ours(max_steps: int):
        training = GenerationTrainingParams(
            epochs=epochs, max_steps=max_steps, per_device_batch_size=BATCH, learning_rate=LEARNING_RATE,
            warmup_ratio=0.0, weight_decay=0.0, lr_scheduler="linear", max_length=MAX_LENGTH,
            precision="bf16" if bf16 else "fp32")
        params = SftParams(model=LocalModel(path=model_dir), method={"name": "full"}, training=training)
        return sft_setup(train, train.iloc[:0], TEMPLATE, params, work / "ours").trainer

    return [Arm("trl_defaults", trl(None)), Arm("trl_no_checkpointing", trl(False)), Arm("ours", ours)]


def select_arms(arms: list[Arm], decompose: bool) -> list[Arm]:
    """TRL defaults and ours; with ``decompose`` also TRL without gradient checkpointing (a third more time)."""
    return [arm for arm in arms if decompose or arm.name != "trl_no_checkpointing"]


def profile_top(arm: Arm, steps: int = 3, rows: int = 12) -> str:
    """Torch profiler table (self CPU time) of a few training steps of an arm."""
    from torch.profiler import ProfilerActivity, profile

    trainer = arm.build(steps)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--decompose", action="store_true",
                        help="also time TRL with gradient checkpointing off (padding vs recomputation)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not (ALPACA / "alpaca_tiny_first100.json").is_file():
        print(f"{ALPACA}: not found (the SFT benchmark needs ../shared/evaldata)", file=sys.stderr)
        return 1
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    work = Path(tempfile.mkdtemp(prefix="perf_sft_"))
    train, validation, _ = split_frame(load_pairs(), 0.125, 0.0, 13)
    resolved = resolve_causal_model(MODEL, work / "base", texts=train["prompt"].tolist() + train["response"].tolist())
    model_dir = Path(resolved.name_or_path)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rendered_train = render_frame(train, TEMPLATE, tokenizer)
    rendered_validation = render_frame(validation, TEMPLATE, tokenizer)
    arms = select_arms(make_arms(model_dir, train, rendered_train, work, args.epochs, bf16), args.decompose)
    for arm in arms:  # untimed warm-up: thread pools, allocator, lazy imports
        arm(max_steps=2, keep=False)
    alternate({arm.name: arm for arm in arms}, repetitions=args.repetitions, warmup=False)

    counts = {arm.name: loss_tokens(arm.trainer.train_dataset) for arm in arms}
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"the arms train on different tokens: {counts}")
    tokens = counts["ours"] * args.epochs
    parameters = sum(p.numel() for p in arms[-1].models[0].parameters())
    results = {}
    for arm in arms:
        losses = [validation_loss(m, tokenizer, rendered_validation, MAX_LENGTH) for m in arm.models]
        results[arm.name] = {
            "train_seconds": summary(arm.train_seconds), "setup_seconds": summary(arm.setup_seconds),
            "train_tokens_per_second": rate_summary(tokens, arm.train_seconds),
            "processed_tokens_per_epoch": processed_tokens(arm.trainer),
            "steps": arm.trainer.state.global_step,
            "validation_loss": [round(x, 4) for x in losses],
        }
    ours = results["ours"]["train_tokens_per_second"]
    ratios = {name: {"best": ours["best"] / r["train_tokens_per_second"]["best"],
                     "median": ours["median"] / r["train_tokens_per_second"]["median"]}
              for name, r in results.items() if name != "ours"}
    met = ratios["trl_defaults"]["median"] >= TARGET
    profile = None if met else profile_top(arms[-1])
    real_tokens = sum(len(ids) for ids in arms[-1].trainer.train_dataset["input_ids"])
    lengths = tokenize_examples(tokenizer, rendered_train["prompt"], rendered_train["completion"], None, True).lengths
    usage = resource.getrusage(resource.RUSAGE_SELF)
    data = {
        "machine": machine(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "data": {"train_pairs": len(train), "validation_pairs": len(validation),
                 "loss_tokens_per_epoch": counts["ours"], "real_tokens_per_epoch": real_tokens,
                 "pairs_cut_at_max_length": sum(n > MAX_LENGTH for n in lengths)},
        "benchmark_wall_seconds": round(time.perf_counter() - started, 1),
        "benchmark_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "model": {"spec": MODEL.model_dump(), "parameters": parameters, "precision": "bf16" if bf16 else "fp32"},
        "settings": {"batch": BATCH, "learning_rate": LEARNING_RATE, "max_length": MAX_LENGTH, "epochs": args.epochs,
                     "repetitions": args.repetitions, "decompose": args.decompose},
        "liger_kernel_installed": importlib.util.find_spec("liger_kernel") is not None,
        "torch_threads": torch.get_num_threads(),
        "results": results, "ratio_ours_over": ratios, "target": TARGET, "target_met": met, "profile_ours": profile,
    }
    path = write_result("sft", data, markdown(data))
    print(path.read_text())
    return 0


def markdown(data: dict) -> str:
    r, d, m, s = data["results"], data["data"], data["model"], data["settings"]
    labels = {"trl_defaults": "TRL `SFTTrainer`, defaults", "trl_no_checkpointing":
              "TRL `SFTTrainer`, defaults but `gradient_checkpointing=False`", "ours": "ours (`sft_setup` defaults)"}
    rows = []
    for name, label in labels.items():
        if name not in r:
            continue
        x = r[name]
        ratio = "1.00" if name == "ours" else (f"{data['ratio_ours_over'][name]['best']:.2f} / "
                                                f"{data['ratio_ours_over'][name]['median']:.2f}")
        rows.append(f"| {label} | {x['train_tokens_per_second']['best']:,.0f} | "
                    f"{x['train_tokens_per_second']['median']:,.0f} | {x['train_seconds']['min']:.1f} / "
                    f"{x['train_seconds']['median']:.1f} | {x['processed_tokens_per_epoch']:,} | {x['steps']} | "
                    f"{statistics.mean(x['validation_loss']):.4f} | {ratio} |")
    verdict = "met" if data["target_met"] else "missed"
    ours_loss, trl_loss = (statistics.mean(r[name]["validation_loss"]) for name in ("ours", "trl_defaults"))
    decomposed = (" (run with `--decompose`, which adds the TRL arm without gradient checkpointing)"
                  if s.get("decompose") else "")
    lines = [
        "## SFT training throughput vs TRL SFTTrainer (`python -m bench.perf_sft`)",
        "",
        f"**Machine:** {data['machine']} ({data['date']})",
        "",
        f"Both sides fine-tune the same seeded Llama-style model ({m['parameters'] / 1e6:.1f} M parameters, hidden "
        f"192, 4 layers, {m['precision']}) on {d['train_pairs']} real Alpaca pairs (from the first 100 Alpaca records "
        f"and the 175 self-instruct seed tasks) for {s['epochs']:g} epoch(s): batch {s['batch']}, learning rate "
        f"{s['learning_rate']:g}, max length {s['max_length']}, completion-only loss, {s['repetitions']} alternating "
        f"repetitions after an untimed 2-step warm-up of each{decomposed}. TRL keeps its `SFTConfig` defaults "
        "otherwise (random "
        "batches padded to their longest example, gradient checkpointing on); ours is `sft_setup` with its defaults "
        "(length-grouped batches, examples tokenized once, no gradient checkpointing). Training tokens are the "
        f"tokens that carry loss (completion tokens; {d['loss_tokens_per_epoch']:,} per epoch out of "
        f"{d['real_tokens_per_epoch']:,} real tokens), the same count on every side; validation loss is the "
        f"completion-token NLL of {d['validation_pairs']} held-out pairs.",
        "",
        "| trainer | train tokens/s (best) | train tokens/s (median) | train s (min / median) | tokens through the "
        "model per epoch (with padding) | steps | validation loss | ours ÷ this (best / median) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Target: ours ≥ {data['target']}× TRL defaults (median) — **{verdict}** "
        f"({data['ratio_ours_over']['trl_defaults']['median']:.2f}×). Validation loss after the same epochs: ours "
        f"{ours_loss:.4f}, TRL defaults {trl_loss:.4f} ({ours_loss - trl_loss:+.4f}); both see the same pairs, ours "
        "in length-grouped batches.",
        f"Repetitions ranged over TRL defaults "
        f"{r['trl_defaults']['train_seconds']['min']:.1f}–{r['trl_defaults']['train_seconds']['max']:.1f} s, ours "
        f"{r['ours']['train_seconds']['min']:.1f}–{r['ours']['train_seconds']['max']:.1f} s; best against best, ours "
        f"is {data['ratio_ours_over']['trl_defaults']['best']:.2f}× TRL defaults. "
        f"The whole benchmark took {data['benchmark_wall_seconds']:.0f} s of wall time and "
        f"{data['benchmark_cpu_seconds']:.0f} CPU-seconds. "
        f"{d['pairs_cut_at_max_length']} of the {d['train_pairs']} training pairs are longer than {s['max_length']} "
        "tokens and are cut on both sides.",
        "Liger kernels: " + ("installed but not used on CPU." if data["liger_kernel_installed"] else
                             "not installed (they are Triton GPU kernels; nothing to gain on CPU)."),
    ]
    if data["profile_ours"]:
        lines += ["", "Where our training time goes (torch profiler, 3 steps, top self-CPU entries):", "",
                  "```", data["profile_ours"].strip(), "```"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
