"""RLHF: a reward model trained on preference pairs (TRL ``RewardTrainer``), then policy optimisation against it with
TRL's ``RLOOTrainer`` or ``GRPOTrainer`` (both stable, outside ``trl.experimental``).

The reward model is a sequence-classification head (``num_labels=1``) on the policy's starting model (both then share
one tokenizer) or on an encoder named by ``reward.model`` (its own tokenizer). It scores ``prompt + completion + EOS``
(EOS where the tokenizer has one), tokenized once by :func:`reward_token_ids` with the start of a too-long prompt cut
off. ``RewardTrainer`` trains on exactly those ids, and the same scorer, a callable, is the RL trainer's reward
function and the before/after evaluation's, so the three read identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from finetune.device import Placement, resolve_device, resolve_placement
from finetune.models.directory import save_model_directory
from finetune.params import HubModel, ModelSpec, RewardEvalParams, RewardModelParams, RlParams
from finetune.training import (
    CheckpointPlan,
    checkpoint_plan,
    common_training_arguments,
    loss_history,
    run_trainer,
    seed_before_building,
)


def load_reward_model(model_dir: str | Path, device: str = "cpu"):
    """A saved (or starting) model with a one-logit sequence-classification head, and its tokenizer.

    From a causal LM directory the head is new (randomly initialised); the pad token id is set on the config,
    because the head reads the last non-pad token of each row.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from finetune.models.sources import pretrained_kwargs

    tokenizer = AutoTokenizer.from_pretrained(model_dir, **pretrained_kwargs(weights=False))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.truncation_side = "left"  # a too-long text loses the start of its prompt, never the answer
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, **pretrained_kwargs())
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def reward_base_directory(spec: ModelSpec, workdir: str | Path, texts: Sequence[str]) -> tuple[Path, str]:
    """The directory and one-line description of an encoder that ``reward.model`` names as the reward model's start
    (a tiny BERT is built under ``workdir`` with a tokenizer trained on ``texts``; a hub model comes from the cache
    at its pinned revision)."""
    from finetune.models.sources import hub_snapshot, resolve_model

    resolved = resolve_model(spec, workdir, texts)
    if isinstance(spec, HubModel):
        return hub_snapshot(spec, resolved.trust_remote_code), resolved.description
    return Path(resolved.name_or_path), resolved.description


def reward_token_ids(tokenizer, prompts: Sequence[str], completions: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of ``prompt + completion + EOS`` per pair, as the reward model reads them in training and scoring.

    The tokenizer's own special tokens are added (a Llama BOS, BERT's [CLS] … [SEP]); EOS is appended as text when
    the tokenizer has one (what ``RewardTrainer`` does). Longer than ``max_length``: the start is cut off, so the
    answer and the end of the prompt stay (the tokenizer comes from ``load_reward_model``, which sets left
    truncation; special tokens are kept).
    """
    eos = tokenizer.eos_token or ""
    texts = [p + c + eos for p, c in zip(prompts, completions, strict=True)]
    return tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]


class RewardScorer:
    """Scores ``prompt + completion + EOS`` with a reward model; callable with TRL's reward-function signature.

    Texts are tokenized by :func:`reward_token_ids`, as ``train_reward_model`` tokenizes its training pairs, so the
    model scores what it was trained on.
    """

    __name__ = "reward_model"  # TRL names the logged reward column after the callable

    def __init__(self, model, tokenizer, batch_size: int = 16, max_length: int = 256):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.max_length = batch_size, max_length

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """One scalar reward per (prompt, completion)."""
        import torch

        ids = reward_token_ids(self.tokenizer, prompts, completions, self.max_length)
        device = next(self.model.parameters()).device
        scores: list[float] = []
        for start in range(0, len(ids), self.batch_size):
            batch = self.tokenizer.pad({"input_ids": ids[start:start + self.batch_size]}, padding=True,
                                       padding_side="right", return_tensors="pt").to(device)
            with torch.inference_mode():
                scores += self.model(**batch).logits[:, 0].float().tolist()
        return scores

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return self.score(prompts, completions)


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """Share of pairs whose chosen reward is strictly higher (ties count as wrong: chance is at most 0.5)."""
    if not chosen or len(chosen) != len(rejected):
        raise ValueError(f"{len(chosen)} chosen but {len(rejected)} rejected rewards")
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(chosen)


def reward_model_metrics(scorer: RewardScorer, pairs: pd.DataFrame, split: str = "test") -> dict[str, float]:
    """On held-out pairs: ``<split>_pairwise_accuracy``, its Wilson 95 % interval (``_low`` / ``_high``) and
    ``<split>_reward_margin`` (mean r_chosen − r_rejected); the baseline "prefer the longer answer" (more tokens of
    the reward model's tokenizer; ties count as wrong) as ``<split>_longer_answer_accuracy``, and the exact McNemar
    p-value of the reward model against it on the same pairs (``<split>_p_value_vs_longer_answer``)."""
    from finetune.generation.preference import mcnemar_p, wilson_interval

    chosen = scorer.score(pairs["prompt"].tolist(), pairs["chosen"].tolist())
    rejected = scorer.score(pairs["prompt"].tolist(), pairs["rejected"].tolist())
    margin = sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(chosen)
    right = [c > r for c, r in zip(chosen, rejected, strict=True)]
    count = scorer.tokenizer(pairs["chosen"].tolist() + pairs["rejected"].tolist(), add_special_tokens=False)
    lengths = [len(ids) for ids in count["input_ids"]]
    longer = [lc > lr for lc, lr in zip(lengths[:len(pairs)], lengths[len(pairs):], strict=True)]
    low, high = wilson_interval(sum(right), len(right))
    return {f"{split}_pairwise_accuracy": pairwise_accuracy(chosen, rejected),
            f"{split}_pairwise_accuracy_low": low, f"{split}_pairwise_accuracy_high": high,
            f"{split}_reward_margin": margin,
            f"{split}_longer_answer_accuracy": sum(longer) / len(longer),
            f"{split}_p_value_vs_longer_answer": mcnemar_p(right, longer)}


def to_reward_config(params: RewardModelParams, output_dir: str | Path, placement: Placement,
                     checkpoints: CheckpointPlan | None = None):
    """Our reward-model parameters as TRL's ``RewardConfig`` (checkpoints per ``checkpoints``; the caller saves)."""
    from trl import RewardConfig

    arguments = {**common_training_arguments(params.training, output_dir, placement),
                 **(checkpoints or CheckpointPlan()).arguments()}
    return RewardConfig(**arguments, max_length=params.training.max_length, eval_strategy="no",
                        center_rewards_coefficient=params.center_rewards_coefficient, dataset_num_proc=None,
                        gradient_checkpointing=False)  # TRL's default is on: recomputing activations, ~20-30 % slower


@dataclass
class RewardTrainResult:
    """The saved reward model, its loss log and its held-out metrics."""

    model_dir: Path
    log_history: list[dict]
    metrics: dict[str, float]


def reward_dataset(tokenizer, pairs: pd.DataFrame, max_length: int):
    """``RewardTrainer``'s tokenized input (``chosen_ids``, ``rejected_ids``): every pair, left-truncated by
    :func:`reward_token_ids` (the trainer's own tokenization would drop pairs longer than ``max_length``)."""
    from datasets import Dataset

    prompts = pairs["prompt"].tolist()
    return Dataset.from_dict({
        "chosen_ids": reward_token_ids(tokenizer, prompts, pairs["chosen"].tolist(), max_length),
        "rejected_ids": reward_token_ids(tokenizer, prompts, pairs["rejected"].tolist(), max_length)})


def train_reward_model(base_model_dir: str | Path, train: pd.DataFrame, test: pd.DataFrame,
                       params: RewardModelParams, output_dir: str | Path) -> RewardTrainResult:
    """Train a reward model with TRL's ``RewardTrainer`` from ``base_model_dir`` and measure it on ``test`` pairs.

    ``base_model_dir`` is the policy's starting model, or the encoder ``params.model`` names
    (:func:`reward_base_directory`). Saved with its tokenizer to ``<output_dir>/model`` (loadable with
    ``load_reward_model``).
    """
    from trl import RewardTrainer

    out = Path(output_dir)
    placement = resolve_placement(params.training.device, params.training.precision)
    seed_before_building(params.training.seed)  # the one-logit score head is new
    model, tokenizer = load_reward_model(base_model_dir)
    if params.freeze is not None:
        from finetune.generation.methods import freeze_layers

        freeze_layers(model, params.freeze)  # the score head is not in a block: it always trains
    plan = checkpoint_plan("reward_model", params.training.checkpoints, params, Path(base_model_dir), train)
    trainer = RewardTrainer(model=model, args=to_reward_config(params, out / "checkpoints", placement, plan),
                            train_dataset=reward_dataset(tokenizer, train, params.training.max_length),
                            processing_class=tokenizer)
    run_trainer(trainer, plan, "train_reward_model")

    def write(path: Path) -> None:
        trainer.model.save_pretrained(path)
        tokenizer.save_pretrained(path)

    model_dir = save_model_directory(trainer.model, out / "model", write)
    plan.finish()
    scorer = RewardScorer(trainer.model, tokenizer, max_length=params.training.max_length)
    return RewardTrainResult(model_dir, loss_history(trainer.state.log_history), reward_model_metrics(scorer, test))


def to_rl_config(params: RlParams, output_dir: str | Path, placement: Placement):
    """Our RL parameters as ``RLOOConfig`` or ``GRPOConfig`` (the fields they share; no checkpoints)."""
    if params.algorithm == "rloo":
        from trl import RLOOConfig as Config
    else:
        from trl import GRPOConfig as Config
    return Config(**common_training_arguments(params.training, output_dir, placement),
                  num_generations=params.num_generations, max_completion_length=params.max_completion_length,
                  temperature=params.temperature, beta=params.beta, save_strategy="no", log_completions=False,
                  gradient_checkpointing=False)  # TRL's default is on: recomputing activations, ~20-30 % slower


@dataclass
class RlTrainResult:
    """The saved policy and the trainer's log (loss and the mean reward of every logged step)."""

    model_dir: Path
    log_history: list[dict]


def reward_log(log_history: list[dict]) -> list[dict]:
    """Step and mean reward (``reward``) of every logged training step."""
    return [{"step": int(e["step"]), "reward": float(e["reward"])} for e in log_history if "reward" in e]


def keep_last_tokens(tokenizer, texts: Sequence[str], max_tokens: int | None) -> list[str]:
    """Each text cut to its last ``max_tokens`` tokens (no special tokens counted), decoded back to text; shorter
    texts and ``max_tokens=None`` leave it unchanged. The cut falls on a token boundary, so tokenizing the result
    gives (up to the tokenizer's merges at the new first character) those last tokens."""
    if max_tokens is None:
        return list(texts)
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [text if len(row) <= max_tokens else tokenizer.decode(row[-max_tokens:])
            for text, row in zip(texts, ids, strict=True)]


def train_policy(base_model_dir: str | Path, reward_fn, prompts: Sequence[str], params: RlParams,
                 output_dir: str | Path) -> RlTrainResult:
    """Optimise the policy in ``base_model_dir`` against ``reward_fn`` with TRL's RLOO or GRPO trainer.

    Args:
        base_model_dir: The starting causal LM (and tokenizer).
        reward_fn: A TRL reward function: ``RewardScorer`` or any ``f(prompts, completions, **kw) -> list[float]``.
        prompts: Training prompts (plain text; each gets ``num_generations`` sampled completions), cut to their last
            ``params.max_prompt_tokens`` tokens.
        params: Algorithm, sampling, KL weight and optimisation.
        output_dir: The policy is saved with its tokenizer to ``<output_dir>/model``.
    """
    from datasets import Dataset

    from finetune.models.causal import load_causal_lm, save_causal_lm

    if params.algorithm == "rloo":
        from trl import RLOOTrainer as Trainer
    else:
        from trl import GRPOTrainer as Trainer
    out = Path(output_dir)
    placement = resolve_placement(params.training.device, params.training.precision)
    model, tokenizer = load_causal_lm(base_model_dir)
    model.train()
    tokenizer.padding_side = "left"  # generation continues the prompts from their right edge
    prompts = keep_last_tokens(tokenizer, prompts, params.max_prompt_tokens)
    trainer = Trainer(model=model, reward_funcs=reward_fn, args=to_rl_config(params, out / "checkpoints", placement),
                      train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer)
    run_trainer(trainer, name=f"train_policy ({params.algorithm})")
    model_dir = save_model_directory(trainer.model, out / "model",
                                     lambda path: save_causal_lm(trainer.model, tokenizer, path))
    return RlTrainResult(model_dir, list(trainer.state.log_history))


def sample_completions(model_dir: str | Path, prompts: Sequence[str], params: RewardEvalParams) -> list[list[str]]:
    """``num_samples`` completions per prompt (greedy when 1, else sampled at ``temperature`` with ``seed``)."""
    import torch

    from finetune.models.causal import load_causal_lm

    model, tokenizer = load_causal_lm(model_dir, device=resolve_device(params.device))
    tokenizer.padding_side = "left"
    torch.manual_seed(params.seed)
    sampled = params.num_samples > 1
    completions: list[list[str]] = []
    for start in range(0, len(prompts), params.batch_size):
        batch = tokenizer(list(prompts[start:start + params.batch_size]), return_tensors="pt", padding=True,
                          add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            output = model.generate(**batch, max_new_tokens=params.max_new_tokens, do_sample=sampled,
                                    temperature=params.temperature if sampled else None, top_k=0 if sampled else None,
                                    num_return_sequences=params.num_samples, pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        completions += [texts[i:i + params.num_samples] for i in range(0, len(texts), params.num_samples)]
    return completions


def mean_reward(model_dir: str | Path, scorer, prompts: Sequence[str], params: RewardEvalParams) -> float:
    """Mean reward of the policy's completions to ``prompts`` (the first ``max_prompts``) under ``scorer``."""
    rewards = prompt_rewards(model_dir, scorer, prompts, params)
    return sum(rewards) / len(rewards)


def prompt_rewards(model_dir: str | Path, scorer, prompts: Sequence[str], params: RewardEvalParams) -> list[float]:
    """Mean reward of the policy's ``num_samples`` completions to each of the first ``max_prompts`` prompts, in
    order. Every prompt has the same number of completions, so the mean of these is :func:`mean_reward`."""
    prompts = list(prompts[: params.max_prompts]) if params.max_prompts else list(prompts)
    completions = sample_completions(model_dir, prompts, params)
    flat_prompts = [p for p, group in zip(prompts, completions, strict=True) for _ in group]
    rewards = iter(scorer(flat_prompts, [c for group in completions for c in group]))
    return [sum(next(rewards) for _ in group) / len(group) for group in completions]
