"""Causal-LM distillation on WikiText-2 validation text: a tiny teacher, students with and without KD, on CPU.

No pretrained causal LM can be downloaded here, so the GPT2-medium → GPT2 recipe is reproduced at tiny scale. The
WikiText-2 validation text (``../shared/evaldata/wikitext-2/tokens/valid.txt``, 60 articles) is split by article
with a seed into train / validation / test (48 / 6 / 6). A teacher (tiny GPT-2, hidden 96 × 4 layers) is
pre-trained from random initialisation on the train articles (``train_causal_lm``); two students (hidden 48 × 2
layers, same seed, same BPE tokenizer: 2,000 entries trained on the train articles) then train with the same
budget: one with ``α·τ²·KL + (1−α)·CE`` (α = 0.5, τ = 2) against the teacher, one with cross-entropy alone (α = 0).
Reported per model: held-out perplexity (disjoint 128-token windows of the test articles), parameter count and
scoring tokens/s (forward passes over the same windows); per student: training time and training tokens/s.

Run: ``python -m bench.lm_distillation_wikitext`` (needs ../shared/evaldata); results go to
``bench/results/lm_distillation_wikitext.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.generation_wikitext import machine
from finetune.data.text import load_text_data
from finetune.generation.distillation import compare_models, distill_causal_lm
from finetune.generation.training import train_causal_lm
from finetune.params import CausalLmParams, LmDistillationParams, LocalModel, TextDataParams, TextFiles, TinyGpt2Model

WIKITEXT = Path("../shared/evaldata/wikitext-2/tokens/valid.txt")
RESULTS = Path("bench/results/lm_distillation_wikitext.json")
BLOCK = 128
TEACHER = TinyGpt2Model(hidden_size=96, num_layers=4, num_heads=4, vocab_size=2000, max_position_embeddings=256)
STUDENT = TinyGpt2Model(hidden_size=48, num_layers=2, num_heads=4, vocab_size=2000, max_position_embeddings=256,
                        seed=1)
# Teacher: 240 updates × 8 blocks × 128 tokens = 246k tokens, most of one pass over the ~290k train tokens.
TEACHER_TRAINING = {"max_steps": 240, "per_device_batch_size": 8, "learning_rate": 3e-3, "warmup_ratio": 0.05,
                    "lr_scheduler": "cosine", "logging_steps": 40, "eval_steps": 80, "device": "cpu",
                    "precision": "fp32"}
# Students: 160 updates each (164k tokens), the same for KD and no-KD.
STUDENT_TRAINING = {**TEACHER_TRAINING, "max_steps": 160, "eval_steps": 80}


def main() -> int:
    if not WIKITEXT.is_file():
        print(f"{WIKITEXT} not found: this benchmark needs ../shared/evaldata", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    start = time.perf_counter()
    data = TextDataParams(source=TextFiles(paths=(WIKITEXT,), documents="wikitext"), validation_fraction=0.1,
                          test_fraction=0.1, split_seed=13)
    train, validation, test = load_text_data(data)
    with tempfile.TemporaryDirectory(prefix="bench_lm_kd_") as tmp:
        work = Path(tmp)
        teacher = train_causal_lm(train, validation, CausalLmParams(model=TEACHER, method={"name": "full"},
                                                                   training=TEACHER_TRAINING, block_size=BLOCK),
                                  work / "teacher")
        print(json.dumps({"teacher": teacher.stats}), flush=True)
        students = {}
        for name, alpha in (("student_kd", 0.5), ("student_no_kd", 0.0)):
            params = LmDistillationParams(teacher=LocalModel(path=teacher.model_dir), student=STUDENT,
                                          training=STUDENT_TRAINING, alpha=alpha, temperature=2.0, block_size=BLOCK)
            students[name] = distill_causal_lm(train, validation, teacher.model_dir, params, work / name)
            print(json.dumps({name: students[name].stats}), flush=True)
        dirs = {"teacher": teacher.model_dir, **{name: r.model_dir for name, r in students.items()}}
        rows = compare_models(dirs, test["text"].tolist(), BLOCK, 16, "cpu")
    training = {"teacher": teacher.stats, **{name: r.stats for name, r in students.items()}}
    for row in rows:
        row.update(test_perplexity=round(row["test_perplexity"], 2), test_nll=round(row["test_nll"], 4),
                   tokens_per_second=round(row["tokens_per_second"], 1),
                   train_seconds=training[row["model"]]["train_seconds"],
                   train_tokens_per_second=training[row["model"]]["tokens_per_second"])
        print(json.dumps(row), flush=True)
    results = {"machine": machine(), "teacher": TEACHER.model_dump(), "student": STUDENT.model_dump(),
               "articles": {"train": len(train), "validation": len(validation), "test": len(test)},
               "teacher_training": TEACHER_TRAINING, "student_training": STUDENT_TRAINING,
               "alpha": 0.5, "temperature": 2.0, "models": rows, "training": training,
               "total_seconds": round(time.perf_counter() - start, 1)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS} ({results['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
