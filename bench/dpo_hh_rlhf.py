"""DPO preference accuracy on a held-out part of Anthropic HH-RLHF helpful-base, with a tiny model on CPU.

The released helpful-base test file (``../shared/evaldata/hh-rlhf/helpful-base-test.jsonl.gz``, 2,354 transcript
pairs; 2 with identical answers are dropped) is read by the pipeline's loader (prompt = the shared prefix up to the
last ``"\\n\\nAssistant:"``) and split with a seed into 80% training and 20% held-out pairs. Pairs longer than the
tiny model's context (prompt + either answer over ``MAX_TOKENS`` BPE tokens) are left out of both, and counted.
No pretrained causal LM can be downloaded here: the policy is a tiny GPT-2 (hidden 64 × 2 layers) from random
initialisation with a 2,000-entry BPE tokenizer trained on the training pairs, aligned with DPO (full fine-tuning,
β = 0.1, sigmoid loss, the starting model as reference). Such a model knows no English, so held-out accuracy near
chance (0.5) is the expected result; the point is the measurement, with its 95% Wilson interval, next to the
accuracy of always preferring the longer answer (a cue that needs no language) and of the starting model's own
log-probability preference, each compared pair by pair with the policy (exact McNemar test), also on the
length-balanced subset (``finetune.generation.preference.comparison_metrics``).

Run: ``python -m bench.dpo_hh_rlhf`` (needs ../shared/evaldata); results go to ``bench/results/dpo_hh_rlhf.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.generation_wikitext import machine
from finetune.data.preferences import load_preference_data
from finetune.generation.preference import evaluate_preferences, train_dpo, wilson_interval
from finetune.params import DpoParams, LocalModel, PreferenceDataParams, PreferenceFile, TinyGpt2Model

HH = Path("../shared/evaldata/hh-rlhf/helpful-base-test.jsonl.gz")
RESULTS = Path("bench/results/dpo_hh_rlhf.json")
MAX_TOKENS = 256
MODEL = TinyGpt2Model(hidden_size=64, num_layers=2, num_heads=4, vocab_size=2000, max_position_embeddings=MAX_TOKENS)
# 150 updates × 8 pairs = 1,200 pairs: about two thirds of one pass over the training pairs.
TRAINING = {"max_steps": 150, "per_device_batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.05,
            "lr_scheduler": "cosine", "max_length": MAX_TOKENS, "logging_steps": 10, "eval_steps": 50,
            "per_device_eval_batch_size": 16, "device": "cpu", "precision": "fp32"}


def fits(frame, tokenizer) -> list[bool]:
    lengths = {c: [len(ids) for ids in tokenizer((frame["prompt"] + frame[c]).tolist())["input_ids"]]
               for c in ("chosen", "rejected")}
    return [max(a, b) <= MAX_TOKENS for a, b in zip(lengths["chosen"], lengths["rejected"], strict=True)]


def main() -> int:
    if not HH.is_file():
        print(f"{HH} not found: this benchmark needs ../shared/evaldata", file=sys.stderr)
        return 1
    from transformers import AutoTokenizer

    from finetune.models.causal import build_tiny_causal_lm
    from finetune.models.sources import pretrained_kwargs

    torch.manual_seed(0)
    start = time.perf_counter()
    train, test, counts = load_preference_data(PreferenceDataParams(source=PreferenceFile(path=HH, format="hh_rlhf"),
                                                                    test_fraction=0.2, split_seed=13))
    texts = [t for c in ("prompt", "chosen", "rejected") for t in train[c].tolist()]
    work = Path(tempfile.mkdtemp(prefix="bench_dpo_"))
    base = build_tiny_causal_lm(MODEL, work / "base", texts)  # the tokenizer sees every training pair
    tokenizer = AutoTokenizer.from_pretrained(base, **pretrained_kwargs(weights=False))
    kept = {name: frame[fits(frame, tokenizer)].reset_index(drop=True) for name, frame in (("train", train),
                                                                                          ("test", test))}
    print(json.dumps({**counts, "train": len(train), "test": len(test), "train_kept": len(kept["train"]),
                      "test_kept": len(kept["test"])}), flush=True)
    params = DpoParams(model=LocalModel(path=base), method={"name": "full"}, reference="model", beta=0.1,
                       loss_type="sigmoid", training=TRAINING)
    result = train_dpo(kept["train"], kept["test"], params, work / "dpo")
    evaluation = evaluate_preferences(result.model_dir, base, kept["test"], params.beta, 16, "cpu")
    shutil.rmtree(work)
    metrics, correct = evaluation.metrics, evaluation.correct["preference"]
    n, wins = len(correct), sum(correct)
    low, high = wilson_interval(wins, n)
    curve = [{"step": e["step"], "eval_rewards/accuracies": round(e["eval_rewards/accuracies"], 4)}
             for e in result.log_history if "eval_rewards/accuracies" in e]
    results = {"machine": machine(), "model": MODEL.model_dump(), "training": TRAINING, "beta": params.beta,
               "pairs": {**counts, "train": len(train), "test": len(test), "train_used": len(kept["train"]),
                         "test_used": n},
               "test_preference_accuracy": round(wins / n, 4), "accuracy_95ci_wilson": [round(low, 4), round(high, 4)],
               "test_reward_margin": round(metrics["test_reward_margin"], 5), "eval_curve": curve,
               # The surface cue a model without language can use: is the chosen answer the longer one (in tokens)?
               "longer_answer_baseline_accuracy": round(metrics["test_longer_answer_accuracy"], 4),
               # Policy against the baselines on the same pairs: accuracies, intervals, McNemar p, balanced subset.
               "held_out_metrics": {k: round(v, 4) for k, v in metrics.items() if not k.startswith("test_reward")},
               "train_stats": result.stats, "total_seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(results, indent=2), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS} ({results['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
