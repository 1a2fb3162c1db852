"""Paired statistics for the latest SmolLM2 ``sft_training`` run: ROUGE-L and ARC-Easy, untuned vs fine-tuned.

The pipeline's gate stores the fine-tuned model's per-example ROUGE-L but only a sample of the baseline's
generations, and multiple-choice accuracy as a mean. This script reads the run's artifacts (the untuned
``base_model_dir``, the fine-tuned ``model_dir``, ``test_examples`` and ``mc_test``), scores both models on the
same examples again with the pipeline's own evaluation functions and parameters, and reports per-example paired
tests with 95 % intervals:

- ROUGE-L: paired t-test on the per-example F-measures, interval of the mean difference;
- ARC-Easy: exact McNemar test on the questions one model gets right and the other wrong, Wald interval of the
  accuracy difference (``mc_accuracy``, raw log-likelihood, as the pipeline's first MC metric).

Run after ``zenml pipeline run ... -c configs/sft_training_smollm2.yaml``:
``python -m bench.real_model_paired``; writes ``bench/results/real_model_paired.json``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import scipy.stats

from finetune.data.arc import from_arc_records
from finetune.generation.evaluation import (
    evaluate_generation_per_example,
    prompts_and_references,
    score_multiple_choice,
)
from finetune.models.causal import load_causal_lm
from finetune.params import GenerationEvalParams

RESULTS = Path("bench/results/real_model_paired.json")


def mean_interval(diff: np.ndarray) -> tuple[float, float]:
    """95 % t interval of the mean of paired differences."""
    low, high = scipy.stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=scipy.stats.sem(diff))
    return float(low), float(high)


def mcnemar_exact(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided exact McNemar p-value from per-question correctness (binomial test on the discordant pairs)."""
    gained, lost = int(np.sum(~before & after)), int(np.sum(before & ~after))
    if gained + lost == 0:
        return 1.0
    return float(scipy.stats.binomtest(gained, gained + lost, 0.5).pvalue)


def main(pipeline: str = "sft_training") -> int:
    from zenml.client import Client

    run = Client().get_pipeline(name_id_or_prefix=pipeline).runs[0]
    out = lambda step, name: run.steps[step].outputs[name][0].load()  # noqa: E731
    config = run.config.parameters
    evaluation = GenerationEvalParams(**config.get("evaluation", {}))
    template = config["data"].get("template", "### Instruction:\n{prompt}\n\n### Response:\n")
    test = out("load_instructions", "test_examples")
    questions = from_arc_records(out("load_multiple_choice", "mc_test"))
    models = {"untuned": out("prepare_causal_lm", "base_model_dir").path, "fine-tuned": out("train_sft_model",
                                                                                             "model_dir").path}
    rouge, correct = {}, {}
    for name, path in models.items():
        model, tokenizer = load_causal_lm(path, device=evaluation.device if evaluation.device != "auto" else None)
        prompts, references = prompts_and_references(test, template, tokenizer)
        _, _, rouge[name] = evaluate_generation_per_example(model, tokenizer, prompts, references, evaluation)
        scores = score_multiple_choice(model, tokenizer, questions, evaluation.mc_prompt_template,
                                       batch_size=evaluation.batch_size)
        correct[name] = np.array([s.prediction("none") == s.answer for s in scores])
    before, after = np.array(rouge["untuned"]), np.array(rouge["fine-tuned"])
    acc_before, acc_after = correct["untuned"], correct["fine-tuned"]
    n = len(questions)
    acc_diff = acc_after.mean() - acc_before.mean()
    # Wald interval of a paired difference of proportions.
    b, c = np.sum(~acc_before & acc_after) / n, np.sum(acc_before & ~acc_after) / n
    se = math.sqrt(max(b + c - (b - c) ** 2, 0.0) / n)
    result = {
        "run": run.name,
        "rougeL": {"examples": len(after), "untuned": float(before.mean()), "fine_tuned": float(after.mean()),
                   "mean_difference": float((after - before).mean()), "ci95": mean_interval(after - before),
                   "p_paired_t": float(scipy.stats.ttest_rel(after, before).pvalue),
                   "better": int(np.sum(after > before)), "worse": int(np.sum(after < before))},
        "arc_easy_mc_accuracy": {"questions": n, "untuned": float(acc_before.mean()),
                                 "fine_tuned": float(acc_after.mean()), "difference": float(acc_diff),
                                 "ci95": (float(acc_diff - 1.96 * se), float(acc_diff + 1.96 * se)),
                                 "p_mcnemar_exact": mcnemar_exact(acc_before, acc_after),
                                 "gained": int(np.sum(~acc_before & acc_after)),
                                 "lost": int(np.sum(acc_before & ~acc_after))},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
