"""WikiText-2 held-out perplexity before/after continued pre-training, then the fine-tuning methods compared on CPU.

No pretrained causal LM can be downloaded here, so both parts use a tiny GPT-2 built from a config with a seed:

1. Continued pre-training. The WikiText-2 validation text (``../shared/evaldata/wikitext-2/tokens/valid.txt``,
   60 articles, ~218k tokens in WikiText's own tokenization) is split by article with a seed into train /
   validation / test (48 / 6 / 6). A tiny GPT-2 (hidden 64, 2 layers) whose byte-level BPE tokenizer (2,000
   entries) is trained on the train articles only trains from random initialisation (``train_causal_lm``, full
   fine-tuning, blocks of 128 tokens); test perplexity is measured before and after on the held-out articles
   (disjoint 128-token windows).
2. Method comparison. The model from part 1 is the base for every method on the demo instruction tasks
   (``write_demo_instructions``), with the same budget (steps × batch) and each method at a learning rate from its
   usual range; each is measured as the ``method_comparison`` pipeline does (trainable parameters, peak RSS
   increase, wall time, tokens/s, validation loss, test perplexity, ROUGE-L, demo multiple-choice accuracy).
   QLoRA needs CUDA and is skipped on a CPU.

Run: ``python -m bench.generation_wikitext`` (needs ../shared/evaldata); results go to
``bench/results/generation_wikitext.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from finetune.data.arc import read_multiple_choice
from finetune.data.instructions import load_instruction_data
from finetune.data.text import load_text_data
from finetune.generation.evaluation import (
    evaluate_generation,
    evaluation_texts,
    multiple_choice_metrics,
    perplexity,
    prompts_and_references,
    score_multiple_choice,
)
from finetune.generation.training import train_causal_lm, train_sft
from finetune.models.causal import load_causal_lm
from finetune.params import (
    CausalLmParams,
    DemoArc,
    DemoInstructions,
    GenerationEvalParams,
    InstructionDataParams,
    LocalModel,
    MultipleChoiceDataParams,
    SftParams,
    TextDataParams,
    TextFiles,
    TinyGpt2Model,
)

WIKITEXT = Path("../shared/evaldata/wikitext-2/tokens/valid.txt")
RESULTS = Path("bench/results/generation_wikitext.json")
BLOCK = 128
BASE = TinyGpt2Model(hidden_size=64, num_layers=2, num_heads=4, vocab_size=2000, max_position_embeddings=256)
# 300 updates × 8 blocks × 128 tokens = 307k tokens: about one pass over the ~290k BPE tokens of the training articles.
PRETRAIN = {"max_steps": 300, "per_device_batch_size": 8, "learning_rate": 3e-3, "warmup_ratio": 0.05,
            "lr_scheduler": "cosine", "logging_steps": 50, "eval_steps": 100, "device": "cpu", "precision": "fp32"}
# Same budget for every method (steps × batch); learning rates from each family's usual range.
METHODS = [
    ({"name": "full"}, 1e-3),
    ({"name": "lora", "r": 8, "lora_alpha": 16}, 5e-3),
    ({"name": "adalora", "init_r": 12, "target_r": 4, "tinit": 10, "tfinal": 20}, 5e-3),
    ({"name": "prefix_tuning", "num_virtual_tokens": 8}, 3e-2),
    ({"name": "p_tuning", "num_virtual_tokens": 8, "encoder_hidden_size": 64}, 3e-2),
    ({"name": "prompt_tuning", "num_virtual_tokens": 8, "init_text": "Answer the question"}, 3e-2),
    ({"name": "multitask_prompt_tuning", "num_virtual_tokens": 8}, 3e-2),
    ({"name": "layer_freezing", "freeze_first_k": 1, "freeze_embeddings": True}, 1e-3),  # block 2 + final norm
    ({"name": "gradual_unfreezing", "unfreeze_every_steps": 20, "lr_decay": 2.6}, 1e-3),
]
SFT = {"max_steps": 100, "per_device_batch_size": 16, "warmup_ratio": 0.05, "max_length": 96, "logging_steps": 25,
       "eval_steps": 50, "device": "cpu", "precision": "fp32"}
EVALUATION = GenerationEvalParams(max_new_tokens=24, batch_size=20, max_examples=60, device="cpu")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def held_out_perplexity(model_dir: Path, texts: list[str]) -> tuple[float, int]:
    model, tokenizer = load_causal_lm(model_dir)
    result = perplexity(model, texts, tokenizer, block_size=BLOCK, stride=BLOCK, batch_size=16)
    return result.perplexity, result.num_tokens


def pretrain(work: Path) -> tuple[dict, Path]:
    data = TextDataParams(source=TextFiles(paths=(WIKITEXT,), documents="wikitext"), validation_fraction=0.1,
                          test_fraction=0.1, split_seed=13)
    train, validation, test = load_text_data(data)
    params = CausalLmParams(model=BASE, method={"name": "full"}, training=PRETRAIN, block_size=BLOCK)
    result = train_causal_lm(train, validation, params, work / "pretrain")
    before, tokens = held_out_perplexity(work / "pretrain" / "base" / "tiny_gpt2", test["text"].tolist())
    after, _ = held_out_perplexity(result.model_dir, test["text"].tolist())
    summary = {"articles": {"train": len(train), "validation": len(validation), "test": len(test)},
               "train_blocks": result.tokenization["train"]["blocks"], "test_tokens": tokens,
               "test_perplexity_before": round(before, 2), "test_perplexity_after": round(after, 2),
               **result.stats}
    return summary, result.model_dir


def compare_methods(base_dir: Path, work: Path, only: set[str] | None = None) -> list[dict]:
    data = InstructionDataParams(source=DemoInstructions(output_dir=work / "instructions", num_examples=600))
    train, validation, test = load_instruction_data(data)
    _, questions = read_multiple_choice(MultipleChoiceDataParams(source=DemoArc(output_dir=work / "arc",
                                                                                num_questions=80)))
    rows = []
    for method, learning_rate in METHODS:
        if only and method["name"] not in only:
            continue
        params = SftParams(model=LocalModel(path=base_dir), method=method,
                           training={**SFT, "learning_rate": learning_rate})
        result = train_sft(train, validation, data.template, params, work / method["name"])
        model, tokenizer = load_causal_lm(result.model_dir)
        ppl = perplexity(model, evaluation_texts(test, data.template, tokenizer), tokenizer, BLOCK - 16, BLOCK - 16)
        prompts, references = prompts_and_references(test, data.template, tokenizer)
        metrics, _ = evaluate_generation(model, tokenizer, prompts, references, EVALUATION)
        mc = multiple_choice_metrics(score_multiple_choice(model, tokenizer, questions, EVALUATION.mc_prompt_template,
                                                           batch_size=EVALUATION.batch_size), "char")
        rows.append({"method": method["name"], "learning_rate": learning_rate, **result.stats,
                     "test_perplexity": round(ppl.perplexity, 2), "test_rougeL": round(metrics["test_rougeL"], 4),
                     "test_mc_accuracy": round(mc["test_mc_accuracy"], 4)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str]) -> int:
    """``--only a,b`` re-measures those methods (after the same seeded pre-training) and replaces their rows."""
    only = set(argv[argv.index("--only") + 1].split(",")) if "--only" in argv else None
    if not WIKITEXT.is_file():
        print(f"{WIKITEXT} not found: this benchmark needs ../shared/evaldata", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_generation_") as tmp:
        work = Path(tmp)
        pretraining, base_dir = pretrain(work)
        print(json.dumps(pretraining), flush=True)
        methods = compare_methods(base_dir, work, only)
    results = {"machine": machine(), "base_model": BASE.model_dump(), "pretraining": pretraining,
               "methods": methods, "total_seconds": round(time.perf_counter() - start, 1)}
    if only:
        previous = json.loads(RESULTS.read_text())
        same = all(previous["pretraining"][k] == pretraining[k] for k in ("test_perplexity_before",
                                                                          "test_perplexity_after"))
        if not same:
            print("pre-training gave different perplexities than the stored run; rerun everything", file=sys.stderr)
            return 1
        fresh = {m["method"]: m for m in methods}
        previous["methods"] = [fresh.get(m["method"], m) for m in previous["methods"]]
        previous["remeasured"] = sorted(fresh)
        results = previous
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS} ({round(time.perf_counter() - start, 1)} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
