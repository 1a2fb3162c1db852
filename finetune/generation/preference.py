"""Direct preference optimisation (TRL ``DPOTrainer``, stable API) and its held-out evaluation.

DPO's implicit reward of a completion ``y`` for a prompt ``x`` is ``β·(log π(y|x) − log π_ref(y|x))`` (sum over the
completion's tokens). Held-out pairs are scored with the trained policy and the reference: preference accuracy is the
fraction of pairs whose chosen completion gets the larger reward, the margin the mean reward difference. The
training curves (``rewards/accuracies``, ``rewards/margins``) are the ones TRL logs.

The policy's accuracy is compared, pair by pair on the same held-out pairs, with three baselines that need no
training: the reference's own preference (``log π_ref(chosen) > log π_ref(rejected)``), the same per completion token,
and "prefer the longer answer" (more completion tokens). Each accuracy has a 95% Wilson interval and each comparison
an exact McNemar p-value; the length-balanced subset (as many pairs with the longer answer chosen as rejected) shows
what is left when length cannot help.
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
        evaluation: Held-out pairs evaluated along the way (may be empty); only the first
            ``params.max_eval_pairs`` when that is set.
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
    if params.max_eval_pairs is not None:
        evaluation = evaluation.head(params.max_eval_pairs)
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


def completion_logprobs(model, tokenizer, prompts: list[str], completions: list[str],
                        batch_size: int) -> tuple[list[float], list[int]]:
    """``log π(completion | prompt)`` (the sum of the completion tokens' log-probabilities) and the token counts.

    Prompt and prompt + completion are tokenized separately, as ``DPOTrainer`` does; the completion is the tokens
    after the prompt's, so a merge across the boundary counts toward the completion (at least one token is scored).
    """
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer([p + c for p, c in zip(prompts, completions, strict=True)],
                         add_special_tokens=False)["input_ids"]
    scored = [max(1, min(len(f) - len(p), len(f) - 1)) for p, f in zip(prompt_ids, full_ids, strict=True)]
    return [sum(values) for values in token_logprobs(model, full_ids, batch_size, scored)], scored


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


# The policy ("preference", as in ``test_preference_accuracy``) first, then the baselines it is compared with.
SYSTEMS = ("preference", "reference_logprob", "reference_logprob_per_token", "longer_answer")


def pair_correctness(chosen: list[float], rejected: list[float], ref_chosen: list[float], ref_rejected: list[float],
                     chosen_tokens: list[int], rejected_tokens: list[int], beta: float) -> dict[str, list[bool]]:
    """Per-pair correctness of the policy and of each baseline, in the pairs' order (a tie is always wrong).

    ``preference``: the policy's implicit reward ``β·(log π − log π_ref)`` is larger for chosen.
    ``reference_logprob``: the starting model's own preference, ``log π_ref(chosen) > log π_ref(rejected)``.
    ``reference_logprob_per_token``: the same divided by each completion's token count (mean log-probability).
    ``longer_answer``: chosen has more completion tokens than rejected.
    """
    n = len(chosen)
    if not all(len(values) == n for values in (rejected, ref_chosen, ref_rejected, chosen_tokens, rejected_tokens)):
        raise ValueError("log-probabilities and token counts must have one value per pair")
    return {
        "preference": [beta * (pc - rc) > beta * (pr - rr)
                       for pc, pr, rc, rr in zip(chosen, rejected, ref_chosen, ref_rejected, strict=True)],
        "reference_logprob": [rc > rr for rc, rr in zip(ref_chosen, ref_rejected, strict=True)],
        "reference_logprob_per_token": [rc / nc > rr / nr for rc, rr, nc, nr in
                                        zip(ref_chosen, ref_rejected, chosen_tokens, rejected_tokens, strict=True)],
        "longer_answer": [nc > nr for nc, nr in zip(chosen_tokens, rejected_tokens, strict=True)],
    }


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (no continuity correction; scipy's ``proportion_ci``)."""
    from scipy.stats import binomtest

    interval = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def mcnemar_p(a: list[bool], b: list[bool]) -> float:
    """Exact McNemar test of two systems' per-pair correctness on the same pairs (two-sided).

    Only discordant pairs count: with ``k`` pairs right for ``a`` alone and ``m`` for ``b`` alone, p is the two-sided
    binomial test of ``k`` successes in ``k + m`` trials at 1/2. No discordant pair gives 1.0.
    """
    from scipy.stats import binomtest

    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def length_balanced_pairs(chosen_tokens: list[int], rejected_tokens: list[int]) -> list[int]:
    """Positions of a length-balanced subset: as many pairs whose chosen answer is longer as whose rejected is.

    Every pair of the smaller group is kept; of the larger group (``L`` pairs, in the pairs' order) the ``m`` pairs at
    its positions ``⌊i·L/m⌋`` for ``i = 0 … m−1`` (``m`` the smaller group's size), evenly spread and with no random
    draw. Equal-length pairs belong to neither group and are left out. On the subset "prefer the longer answer"
    scores exactly 0.5.

    Returns:
        The kept positions, ascending (``2m`` of them).
    """
    longer = [i for i, (c, r) in enumerate(zip(chosen_tokens, rejected_tokens, strict=True)) if c > r]
    shorter = [i for i, (c, r) in enumerate(zip(chosen_tokens, rejected_tokens, strict=True)) if c < r]
    small, large = sorted((longer, shorter), key=len)
    m = len(small)
    return sorted(small + [large[i * len(large) // m] for i in range(m)])


def comparison_metrics(correct: dict[str, list[bool]], chosen_tokens: list[int], rejected_tokens: list[int],
                       split: str = "test") -> dict[str, float]:
    """The policy against each baseline on the same pairs: accuracies, 95% Wilson intervals, exact McNemar p.

    Args:
        correct: :data:`SYSTEMS` -> per-pair correctness (from :func:`pair_correctness`).
        chosen_tokens: Completion tokens of each chosen answer.
        rejected_tokens: Completion tokens of each rejected answer.
        split: Name prefix.

    Returns:
        On all pairs, for every system ``s``: ``<split>_<s>_accuracy`` with ``..._accuracy_ci_low`` and
        ``..._accuracy_ci_high``, and for every baseline ``<split>_<s>_mcnemar_p`` (policy against ``s``). The same
        with the prefix ``<split>_balanced_`` on the :func:`length_balanced_pairs` subset (left out when it is
        empty), with its size ``<split>_balanced_pairs``. Accuracy alone (no interval) where the chosen answer is
        longer (``<split>_chosen_longer_<s>_accuracy``) and where the rejected one is (``<split>_rejected_longer_``),
        for every system but ``longer_answer`` (1 and 0 there by definition), with the group sizes
        ``<split>_chosen_longer_pairs``, ``<split>_rejected_longer_pairs`` and ``<split>_equal_length_pairs``.
    """
    n = len(chosen_tokens)
    if not n:
        raise ValueError("comparison metrics need at least one pair")
    policy = correct["preference"]
    metrics: dict[str, float] = {}

    def compare(prefix: str, positions: list[int]) -> None:
        for system in SYSTEMS:
            values = [correct[system][i] for i in positions]
            low, high = wilson_interval(sum(values), len(values))
            metrics.update({f"{prefix}{system}_accuracy": sum(values) / len(values),
                            f"{prefix}{system}_accuracy_ci_low": low, f"{prefix}{system}_accuracy_ci_high": high})
            if system != "preference":
                metrics[f"{prefix}{system}_mcnemar_p"] = mcnemar_p([policy[i] for i in positions], values)

    compare(f"{split}_", list(range(n)))
    balanced = length_balanced_pairs(chosen_tokens, rejected_tokens)
    metrics[f"{split}_balanced_pairs"] = float(len(balanced))
    if balanced:
        compare(f"{split}_balanced_", balanced)
    groups = {"chosen_longer": [i for i in range(n) if chosen_tokens[i] > rejected_tokens[i]],
              "rejected_longer": [i for i in range(n) if chosen_tokens[i] < rejected_tokens[i]]}
    for group, positions in groups.items():
        metrics[f"{split}_{group}_pairs"] = float(len(positions))
        for system in SYSTEMS[:-1] if positions else ():
            metrics[f"{split}_{group}_{system}_accuracy"] = sum(correct[system][i] for i in positions) / len(positions)
    metrics[f"{split}_equal_length_pairs"] = float(n - len(groups["chosen_longer"]) - len(groups["rejected_longer"]))
    return metrics


@dataclass(frozen=True)
class PreferenceEvaluation:
    """Held-out pairs scored by policy and reference.

    Attributes:
        metrics: :func:`preference_metrics` and :func:`comparison_metrics` in one flat dict.
        correct: :data:`SYSTEMS` -> per-pair correctness, in the pairs' order.
        balanced: Positions of the length-balanced subset (:func:`length_balanced_pairs`).
    """

    metrics: dict[str, float]
    correct: dict[str, list[bool]]
    balanced: list[int]

    def balanced_correct(self, system: str = "preference") -> list[bool]:
        """One system's per-pair correctness on the length-balanced subset."""
        return [self.correct[system][i] for i in self.balanced]


def evaluate_preferences(model_dir: str | Path, reference_dir: str | Path, pairs: pd.DataFrame, beta: float,
                         batch_size: int = 8, device: str = "cpu") -> PreferenceEvaluation:
    """Score held-out pairs with the policy and the reference; metrics, per-pair correctness and the balanced subset.

    Token counts (for the per-token and the longer-answer baselines) come from the reference's tokenizer.
    """
    logps, tokens = {}, {}
    for role, path in (("policy", model_dir), ("reference", reference_dir)):
        model, tokenizer = load_causal_lm(path, device=device)
        prompts = pairs["prompt"].tolist()
        scored = [completion_logprobs(model, tokenizer, prompts, pairs[c].tolist(), batch_size)
                  for c in ("chosen", "rejected")]
        logps[role] = [values for values, _ in scored]
        tokens[role] = [counts for _, counts in scored]
    correct = pair_correctness(*logps["policy"], *logps["reference"], *tokens["reference"], beta)
    metrics = {**preference_metrics(*logps["policy"], *logps["reference"], beta),
               **comparison_metrics(correct, *tokens["reference"])}
    return PreferenceEvaluation(metrics, correct, length_balanced_pairs(*tokens["reference"]))


def agreement_curves(log_history: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """``(step, value)`` series of the logged preference agreement: training and evaluation accuracies."""
    return {name: [(float(e["step"]), float(e[key])) for e in log_history if key in e and "step" in e]
            for name, key in (("train", "rewards/accuracies"), ("held-out", "eval_rewards/accuracies"))}


def local(path: str | Path) -> LocalModel:
    """A ``LocalModel`` spec for a directory (steps hand trained or prepared models on this way)."""
    return LocalModel(path=Path(path))
