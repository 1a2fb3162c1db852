"""Direct preference optimisation (TRL ``DPOTrainer``, stable API) and its held-out evaluation.

DPO's implicit reward of a completion ``y`` for a prompt ``x`` is ``β·(log π(y|x) − log π_ref(y|x))`` (sum over the
completion's tokens). Held-out pairs are scored with the trained policy and the reference: preference accuracy is the
fraction of pairs whose chosen completion gets the larger reward, the margin the mean reward difference. The
training curves (``rewards/accuracies``, ``rewards/margins``) are the ones TRL logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from finetune.device import Placement, require_cuda, resolve_placement
from finetune.generation.evaluation import token_logprobs
from finetune.generation.methods import prepare_model, trainable_parameters
from finetune.models.causal import load_causal_lm, load_pretrained_causal_lm, resolve_causal_model, save_causal_lm
from finetune.models.directory import save_model_directory
from finetune.models.sources import pretrained_kwargs
from finetune.params import DpoParams, LocalModel
from finetune.training import (
    CheckpointPlan,
    checkpoint_plan,
    common_training_arguments,
    run_trainer,
    seed_before_building,
)

CURVE_KEYS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")


def to_dpo_config(params: DpoParams, output_dir: str | Path, placement: Placement, *, has_eval: bool,
                  checkpoints: CheckpointPlan | None = None):
    """Map our DPO parameters onto TRL's ``DPOConfig`` (the one place this happens).

    With held-out pairs the trainer evaluates every ``eval_steps`` steps, which logs ``eval_rewards/accuracies``.
    Checkpoints, for resuming a killed run, only as ``checkpoints`` says: the final model is saved by the caller.
    """
    from trl import DPOConfig

    training = params.training
    arguments = {**common_training_arguments(training, output_dir, placement),
                 **(checkpoints or CheckpointPlan()).arguments()}
    return DPOConfig(
        **arguments,
        per_device_eval_batch_size=training.per_device_eval_batch_size,
        gradient_checkpointing=training.gradient_checkpointing,
        max_length=training.max_length,
        beta=params.beta,
        loss_type=[params.loss_type],
        label_smoothing=params.label_smoothing,
        precompute_ref_log_probs=params.reference == "precomputed",
        eval_strategy="steps" if has_eval else "no",
        eval_steps=training.eval_steps,
        dataset_num_proc=None,
    )


@dataclass
class DpoResult:
    """A DPO run: the saved policy (LoRA merged), the trainer's log and measurements."""

    model_dir: Path
    log_history: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def train_dpo(train: pd.DataFrame, evaluation: pd.DataFrame, params: DpoParams, output_dir: str | Path,
              reference_dir: str | Path | None = None) -> DpoResult:
    """Align ``params.model`` on preference pairs with TRL's ``DPOTrainer``.

    Args:
        train: Pairs (``prompt, chosen, rejected``).
        evaluation: Held-out pairs evaluated along the way (may be empty).
        params: Model, method (full or LoRA), reference mode, β, loss type and optimisation.
        output_dir: Work folder; the policy is saved to ``<output_dir>/model``.
        reference_dir: An explicit reference model (``reference: model``); default the starting model.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOTrainer

    out = Path(output_dir)
    training = params.training
    placement = resolve_placement(training.device, training.precision)
    if params.method.name == "qlora":
        require_cuda("QLoRA (4-bit NF4 quantisation with bitsandbytes)")
    texts = [t for c in ("prompt", "chosen", "rejected") for t in train[c].tolist()]
    resolved = resolve_causal_model(params.model, out / "base", texts=texts)
    dtype = torch.bfloat16 if placement.bf16 else torch.float16 if placement.fp16 else torch.float32
    seed_before_building(training.seed)  # LoRA's A matrices are drawn when the adapter is added
    model, tokenizer = load_pretrained_causal_lm(resolved, params.method.name == "qlora", dtype)
    ref_model = None
    if params.reference == "model":
        load = resolved.model_kwargs() if reference_dir is None else pretrained_kwargs()
        ref_model = AutoModelForCausalLM.from_pretrained(str(reference_dir or resolved.name_or_path), **load)
    prepared = prepare_model(model, params.method, tokenizer_path=resolved.name_or_path,
                             learning_rate=training.learning_rate, weight_decay=training.weight_decay)
    datasets = {name: Dataset.from_pandas(frame[["prompt", "chosen", "rejected"]], preserve_index=False)
                for name, frame in (("train", train), ("eval", evaluation)) if not frame.empty}
    plan = checkpoint_plan("dpo", training.checkpoints, params, train, evaluation,
                           None if reference_dir is None else Path(reference_dir))
    args = to_dpo_config(params, out / "checkpoints", placement, has_eval="eval" in datasets, checkpoints=plan)
    trainer = DPOTrainer(model=prepared.model, ref_model=ref_model, args=args, train_dataset=datasets["train"],
                         eval_dataset=datasets.get("eval"), processing_class=tokenizer, callbacks=prepared.callbacks)
    trainable, total = trainable_parameters(trainer.model)
    run = run_trainer(trainer, plan, "train_dpo")
    model_dir = save_model_directory(trainer.model, out / "model",
                                     lambda path: save_causal_lm(trainer.model, tokenizer, path))
    plan.finish()
    stats = {"trainable_parameters": trainable, "total_parameters": total, "train_seconds": round(run.seconds, 2),
             "steps": trainer.state.global_step, "train_pairs": len(train), "beta": params.beta,
             "loss_type": params.loss_type, "reference": params.reference, "resumed_from_step": run.resumed_from_step}
    return DpoResult(model_dir, list(trainer.state.log_history), stats)


def completion_logprobs(model, tokenizer, prompts: list[str], completions: list[str], batch_size: int) -> list[float]:
    """``log π(completion | prompt)``: the sum of the completion tokens' log-probabilities.

    Prompt and prompt + completion are tokenized separately, as ``DPOTrainer`` does; the completion is the tokens
    after the prompt's, so a merge across the boundary counts toward the completion.
    """
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer([p + c for p, c in zip(prompts, completions, strict=True)],
                         add_special_tokens=False)["input_ids"]
    scored = [max(1, min(len(f) - len(p), len(f) - 1)) for p, f in zip(prompt_ids, full_ids, strict=True)]
    return [sum(values) for values in token_logprobs(model, full_ids, batch_size, scored)]


def preference_metrics(chosen: list[float], rejected: list[float], ref_chosen: list[float],
                       ref_rejected: list[float], beta: float, split: str = "test") -> dict[str, float]:
    """Preference accuracy and reward margin from the log-probabilities of policy and reference.

    Reward ``r = β·(log π − log π_ref)``; a pair is correct when ``r_chosen > r_rejected`` (a tie counts as wrong,
    as in TRL's ``rewards/accuracies``).

    Returns:
        ``<split>_preference_accuracy``, ``<split>_reward_margin`` (mean ``r_chosen − r_rejected``),
        ``<split>_reward_chosen``, ``<split>_reward_rejected`` (means) and ``<split>_pairs``.
    """
    if not chosen:
        raise ValueError("preference metrics need at least one pair")
    r_chosen = [beta * (p - r) for p, r in zip(chosen, ref_chosen, strict=True)]
    r_rejected = [beta * (p - r) for p, r in zip(rejected, ref_rejected, strict=True)]
    n = len(r_chosen)
    margins = [c - r for c, r in zip(r_chosen, r_rejected, strict=True)]
    return {f"{split}_preference_accuracy": sum(m > 0 for m in margins) / n,
            f"{split}_reward_margin": sum(margins) / n,
            f"{split}_reward_chosen": sum(r_chosen) / n,
            f"{split}_reward_rejected": sum(r_rejected) / n,
            f"{split}_pairs": float(n)}


def evaluate_preferences(model_dir: str | Path, reference_dir: str | Path, pairs: pd.DataFrame, beta: float,
                         batch_size: int = 8, device: str = "cpu") -> tuple[dict[str, float], list[bool]]:
    """Score held-out pairs with the policy and the reference; returns the metrics and per-pair correctness."""
    logps = {}
    for role, path in (("policy", model_dir), ("reference", reference_dir)):
        model, tokenizer = load_causal_lm(path, device=device)
        prompts = pairs["prompt"].tolist()
        logps[role] = [completion_logprobs(model, tokenizer, prompts, pairs[c].tolist(), batch_size)
                       for c in ("chosen", "rejected")]
    metrics = preference_metrics(*logps["policy"], *logps["reference"], beta)
    correct = [beta * (pc - rc) > beta * (pr - rr) for pc, pr, rc, rr in
               zip(*logps["policy"], *logps["reference"], strict=True)]
    return metrics, correct


def agreement_curves(log_history: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """``(step, value)`` series of the logged preference agreement: training and evaluation accuracies."""
    return {name: [(float(e["step"]), float(e[key])) for e in log_history if key in e and "step" in e]
            for name, key in (("train", "rewards/accuracies"), ("held-out", "eval_rewards/accuracies"))}


def local(path: str | Path) -> LocalModel:
    """A ``LocalModel`` spec for a directory (steps hand trained or prepared models on this way)."""
    return LocalModel(path=Path(path))
