"""Training causal LMs: supervised fine-tuning (TRL ``SFTTrainer``) and continued pre-training (transformers
``Trainer`` on text packed into blocks), with any method of ``finetune.generation.methods``.

One function maps our parameters onto ``TrainingArguments`` / ``SFTConfig`` (``to_training_arguments``). Every run
measures what the method comparison reports: trainable parameters, peak memory (RSS sampled during training on
CPU, ``torch.cuda.max_memory_allocated`` on GPU), wall time, tokens per second, and the validation loss of the
model that is kept (the best checkpoint when validation runs).
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from finetune.data.tokenized import TokenizedDataset, check_tokenized_for, token_length_stats
from finetune.device import Placement, require_cuda, resolve_placement
from finetune.generation.chunked_loss import with_chunked_loss
from finetune.generation.methods import prepare_model, trainable_parameters
from finetune.generation.throughput import batching_options
from finetune.generation.tokenization import document_split, effective_block_size, group_texts, instruction_split
from finetune.models.causal import load_pretrained_causal_lm, resolve_causal_model, save_causal_lm
from finetune.models.directory import save_model_directory
from finetune.models.sources import check_max_length
from finetune.params import (
    AdaLoraMethod,
    CausalLmParams,
    GenerationTrainingParams,
    QLoraMethod,
    SftParams,
)
from finetune.training import (
    CheckpointPlan,
    checkpoint_plan,
    common_training_arguments,
    run_trainer,
    seed_before_building,
)

logger = logging.getLogger(__name__)

__all__ = ["group_texts", "token_length_stats"]  # re-exported: they lived here before finetune.data.tokenized


def to_training_arguments(params: GenerationTrainingParams, output_dir: str | Path, placement: Placement, *,
                          has_validation: bool, sft: dict | None = None, checkpoints: CheckpointPlan | None = None):
    """Map our training parameters onto ``TrainingArguments``, or ``SFTConfig`` when ``sft`` options are given.

    With validation data the model is evaluated (and a checkpoint saved) every ``eval_steps`` steps and the one with
    the lowest validation loss is restored at the end; without it nothing is evaluated or saved along the way.
    With ``checkpoints`` on, checkpoints hold the full training state and go to its folder so a killed run can
    resume: every ``eval_steps`` when validation keeps the best model (the best must be among the saved), else
    every ``checkpoints.every_steps``.
    """
    from transformers import TrainingArguments

    kwargs = dict(
        **common_training_arguments(params, output_dir, placement),
        per_device_eval_batch_size=params.per_device_eval_batch_size,
        include_num_input_tokens_seen="non_padding",
        gradient_checkpointing=params.gradient_checkpointing,
    )
    plan = checkpoints or CheckpointPlan()
    if has_validation:
        kwargs.update(eval_strategy="steps", eval_steps=params.eval_steps, save_strategy="steps",
                      save_steps=params.eval_steps, save_only_model=True, save_total_limit=1,
                      load_best_model_at_end=params.load_best_model_at_end, metric_for_best_model="eval_loss",
                      greater_is_better=False)
        if plan.directory is not None:
            kwargs.update(plan.arguments())
            if params.load_best_model_at_end:
                kwargs.update(save_steps=params.eval_steps)
    else:
        kwargs.update(eval_strategy="no", **plan.arguments())
    if sft is None:
        return TrainingArguments(**kwargs)
    from trl import SFTConfig

    return SFTConfig(**kwargs, **sft)


def early_stopping_callbacks(params: GenerationTrainingParams, has_validation: bool) -> list:
    """transformers' ``EarlyStoppingCallback`` when patience is set (it needs validation and best-model loading).

    Raises:
        ValueError: Early stopping without validation data or without ``load_best_model_at_end``.
    """
    if params.early_stopping_patience is None:
        return []
    if not has_validation or not params.load_best_model_at_end:
        raise ValueError("training.early_stopping_patience needs validation data and load_best_model_at_end: true")
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(params.early_stopping_patience, params.early_stopping_threshold)]


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on GPU, else process RSS sampled every 20 ms by a thread.

    RSS includes everything the process holds (Python, libraries, data), so compare methods run in one process
    by the increase over the starting RSS, which is what ``peak_mb`` reports on CPU.
    """

    def __init__(self, device: str):
        self.device = device
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            return self
        import psutil

        process = psutil.Process()
        self._start = process.memory_info().rss
        self._peak = self._start

        def sample():
            while not self._stop.wait(0.02):
                self._peak = max(self._peak, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak_mb = (self._peak - self._start) / 2**20


@dataclass
class CausalTrainResult:
    """What a training run produced and measured.

    Attributes:
        model_dir: The saved model (``load_causal_lm`` reads it).
        log_history: Trainer log entries (``loss``, ``eval_loss``, ``learning_rate`` by ``step``).
        stats: ``trainable_parameters``, ``total_parameters``, ``peak_memory_mb``, ``train_seconds``,
            ``tokens_per_second``, ``train_tokens``, ``validation_loss``, ``validation_perplexity``, ``steps``.
        tokenization: Per split token-length statistics (``token_length_stats``).
        base_model: One line on where the starting weights came from.
        unfreezing_history: ``(step, groups unfrozen)`` for gradual unfreezing.
    """

    model_dir: Path
    log_history: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    tokenization: dict = field(default_factory=dict)
    base_model: str = ""
    unfreezing_history: list = field(default_factory=list)


def _total_steps(params: GenerationTrainingParams, num_sequences: int) -> int:
    """Optimizer steps of the run, as the Trainer will count them (AdaLoRA's schedule needs the number up front)."""
    if params.max_steps > 0:
        return params.max_steps
    per_epoch = math.ceil(math.ceil(num_sequences / params.per_device_batch_size) / params.gradient_accumulation_steps)
    return max(1, math.ceil(per_epoch * params.epochs))


def _load_base(params: SftParams | CausalLmParams, placement: Placement, workdir: Path, texts: list[str] | None):
    import torch

    if isinstance(params.method, QLoraMethod):
        # Before anything loads: a 4-bit base model cannot exist without CUDA and bitsandbytes.
        require_cuda("QLoRA (4-bit NF4 quantisation with bitsandbytes)")
    resolved = resolve_causal_model(params.model, workdir / "base", texts=texts)
    seed_before_building(params.training.seed)  # LoRA / prompt-learning weights are drawn when the method is applied
    compute_dtype = torch.bfloat16 if placement.bf16 else torch.float16 if placement.fp16 else torch.float32
    model, tokenizer = load_pretrained_causal_lm(resolved, isinstance(params.method, QLoraMethod), compute_dtype)
    return resolved, model, tokenizer


@dataclass
class TrainingSetup:
    """A trainer ready to run, with what ``run_training`` needs to measure and save its result (``name``: what is
    trained, for a divergence error)."""

    trainer: object
    prepared: object
    placement: Placement
    tokenizer: object
    resolved: object
    params: SftParams | CausalLmParams
    output_dir: Path
    has_validation: bool
    tokenization: dict
    checkpoints: CheckpointPlan = field(default_factory=CheckpointPlan)
    name: str = "train_causal_lm"


def check_positions(model, method, sequence_length: int) -> None:
    """Fail early when a sequence plus a prompt-learning method's virtual tokens exceeds the model's positions.

    Raises:
        ValueError: ``sequence_length + num_virtual_tokens`` is larger than ``max_position_embeddings``.
    """
    virtual = getattr(method, "num_virtual_tokens", 0)
    positions = getattr(model.config, "max_position_embeddings", None)
    if virtual and positions and sequence_length + virtual > positions:
        raise ValueError(f"{method.name}: {sequence_length} tokens + {virtual} virtual tokens exceed the model's "
                         f"{positions} positions; lower training.max_length (or block_size) to {positions - virtual}")


def run_training(setup: TrainingSetup) -> CausalTrainResult:
    """Train, measure (memory, time, tokens/s, validation loss of the kept model) and save to ``<output_dir>/model``."""
    trainer, prepared, placement, params = setup.trainer, setup.prepared, setup.placement, setup.params
    # Counted before training: AdaLoRA's budget masks ranks along the way, and what the method trains is the point.
    trainable, total = trainable_parameters(trainer.model)
    with PeakMemory(placement.device) as memory:
        run = run_trainer(trainer, setup.checkpoints, setup.name)
        seconds = run.seconds
    if prepared.unfreezing is not None:  # gradual unfreezing: every group unfrozen by the last step counts
        named = dict(trainer.model.named_parameters())
        unfrozen = prepared.unfreezing.history[-1][1]
        trainable = sum(named[n].numel() for group in prepared.unfreezing.groups[:unfrozen] for n in group)
    tokens = int(trainer.state.num_input_tokens_seen)
    stats = {"trainable_parameters": trainable, "total_parameters": total, "peak_memory_mb": round(memory.peak_mb, 1),
             "train_seconds": round(seconds, 2), "train_tokens": tokens,
             "tokens_per_second": round(tokens / seconds, 1) if seconds else 0.0, "steps": trainer.state.global_step,
             "resumed_from_step": run.resumed_from_step}
    if setup.has_validation:
        loss = trainer.evaluate()["eval_loss"]
        stats.update(validation_loss=round(loss, 4), validation_perplexity=round(math.exp(min(loss, 50.0)), 3))
    model_dir = save_trained_model(trainer.model, setup.tokenizer, setup.output_dir / "model", setup.resolved, params)
    setup.checkpoints.finish()
    history = prepared.unfreezing.history if prepared.unfreezing else []
    return CausalTrainResult(model_dir, list(trainer.state.log_history), stats, setup.tokenization,
                             setup.resolved.description, history)


def save_trained_model(model, tokenizer, out: Path, resolved, params: SftParams | CausalLmParams) -> Path:
    """Save a trained model with ``save_causal_lm``, whole or not at all and never with NaN/inf weights
    (``save_model_directory``); a QLoRA adapter is first merged into a bf16 copy of the base."""
    return save_model_directory(model, out, lambda path: _write_trained_model(model, tokenizer, path, resolved, params))


def _write_trained_model(model, tokenizer, out: Path, resolved, params: SftParams | CausalLmParams) -> Path:
    if not isinstance(params.method, QLoraMethod):
        return save_causal_lm(model, tokenizer, out)
    # A LoRA adapter trained on a 4-bit base is merged into a full-precision copy of the base, not into 4-bit weights.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as adapter_dir:
        model.save_pretrained(adapter_dir)
        base = AutoModelForCausalLM.from_pretrained(resolved.name_or_path, dtype=torch.bfloat16,
                                                    **resolved.model_kwargs())
        merged = PeftModel.from_pretrained(base, adapter_dir)
    return save_causal_lm(merged, tokenizer, out)


def train_sft(train: pd.DataFrame | TokenizedDataset, validation: pd.DataFrame | TokenizedDataset,
              template: str | None, params: SftParams, output_dir: str | Path) -> CausalTrainResult:
    """Supervised fine-tuning with TRL's ``SFTTrainer``; see ``sft_setup`` for the arguments."""
    return run_training(sft_setup(train, validation, template, params, output_dir))


def sft_setup(train: pd.DataFrame | TokenizedDataset, validation: pd.DataFrame | TokenizedDataset,
              template: str | None, params: SftParams, output_dir: str | Path) -> TrainingSetup:
    """Build TRL's ``SFTTrainer`` on rendered prompt/completion pairs (not yet trained).

    ``SFTTrainer`` (TRL 1.16) already computes its loss without full logits: its fused LM head projects tiles of
    4,096 tokens × 32,768 vocabulary columns and logs entropy and token accuracy from the same tiles, which is why
    ``training.chunked_loss_tokens`` is refused here.

    Args:
        train: Example table (``finetune.data.instructions.EXAMPLE_COLUMNS``), tokenized here; or the split already
            tokenized (``finetune.generation.tokenization.tokenize_instructions`` with ``params.tokenization``),
            read memory-mapped. Both give the same sequences, so the same training for the same seed.
        validation: The same for validation (may be empty: no validation, no best-checkpoint selection).
        template: ``InstructionDataParams.template`` (tokenized splits carry theirs: None skips the check).
        params: Model, method, optimisation, completion-only loss, packing and batching.
        output_dir: Work folder; the model is saved to ``<output_dir>/model``.

    Raises:
        ValueError: A tokenized split made with another tokenizer, ``max_length``, masking or template.
    """
    from trl import SFTTrainer

    out = Path(output_dir)
    training = params.training
    placement = resolve_placement(training.device, training.precision)
    pretokenized = isinstance(train, TokenizedDataset)
    texts = None if pretokenized else train["prompt"].tolist() + train["response"].tolist()
    resolved, model, tokenizer = _load_base(params, placement, out, texts)
    check_max_length(model.config, training.max_length, "training.max_length", resolved.name_or_path)
    check_positions(model, params.method, training.max_length)
    if pretokenized:
        expected = {"max_length": training.max_length, "completion_only": params.completion_only}
        splits = _read_splits(train, validation, "sft", tokenizer, **expected,
                              **({} if template is None else {"template": template}))
        num_examples = train.stats["examples"]
        key_inputs = _fingerprints(training, train, validation)
    else:
        # Tokenized once here (for the length statistics and for training); SFTTrainer skips its own tokenization.
        frames = {"train": train, **({} if validation.empty else {"validation": validation})}
        settings = params.tokenization(template)
        splits = {name: instruction_split(tokenizer, resolved.description, frame, name, settings)
                  for name, frame in frames.items()}
        num_examples = len(train)
        key_inputs = (train, validation, template)
    datasets = {name: dataset for name, (dataset, _) in splits.items()}
    tokenization = {name: stats["lengths"] | {"dropped_no_completion": stats["dropped_no_completion"]}
                    for name, (_, stats) in splits.items()}
    has_validation = "validation" in datasets
    if isinstance(params.method, AdaLoraMethod) and params.packing and training.max_steps <= 0:
        raise ValueError("adalora with packing: set training.max_steps (packed sequence counts are known only later)")
    prepared = prepare_model(model, params.method, tokenizer_path=resolved.name_or_path,
                             total_steps=_total_steps(training, num_examples), learning_rate=training.learning_rate,
                             weight_decay=training.weight_decay)
    # Sequences are already truncated; TRL refuses a max_length with padding-free batches that it does not pack.
    max_length = None if params.padding_free and not params.packing else training.max_length
    sft = {"max_length": max_length, "completion_only_loss": params.completion_only, "packing": params.packing,
           "dataset_num_proc": None, **batching_options(params)}
    plan = checkpoint_plan("sft", training.checkpoints, params, *key_inputs)
    args = to_training_arguments(training, out / "checkpoints", placement, has_validation=has_validation, sft=sft,
                                 checkpoints=plan)
    trainer = SFTTrainer(
        model=prepared.model, args=args, train_dataset=datasets["train"], eval_dataset=datasets.get("validation"),
        processing_class=tokenizer,
        callbacks=prepared.callbacks + early_stopping_callbacks(training, has_validation) + plan.callbacks(),
        optimizers=(prepared.optimizer, None),
    )
    return TrainingSetup(trainer, prepared, placement, tokenizer, resolved, params, out, has_validation, tokenization,
                         plan, "train_sft")


def _read_splits(train: TokenizedDataset, validation: TokenizedDataset, kind: str, tokenizer,
                 **expected) -> dict[str, tuple]:
    """The tokenized train split and a non-empty validation split as ``name -> (dataset, stats)``, each checked to
    be made for this training (``check_tokenized_for``) and loaded memory-mapped."""
    splits = {"train": train, **({"validation": validation} if validation.stats["examples"] else {})}
    for tokenized in splits.values():
        check_tokenized_for(tokenized, kind, tokenizer, **expected)
    return {name: (tokenized.load(), tokenized.stats) for name, tokenized in splits.items()}


def _fingerprints(training: GenerationTrainingParams, *splits: TokenizedDataset) -> tuple[str, ...]:
    """The tokenized splits' content fingerprints for the checkpoint key (read only when checkpoints are on)."""
    return tuple(t.fingerprint() for t in splits) if training.checkpoints.every_steps is not None else ()


def train_causal_lm(train: pd.DataFrame | TokenizedDataset, validation: pd.DataFrame | TokenizedDataset,
                    params: CausalLmParams, output_dir: str | Path) -> CausalTrainResult:
    """Continued pre-training with transformers' ``Trainer``; see ``causal_lm_setup`` for the arguments."""
    return run_training(causal_lm_setup(train, validation, params, output_dir))


def causal_lm_setup(train: pd.DataFrame | TokenizedDataset, validation: pd.DataFrame | TokenizedDataset,
                    params: CausalLmParams, output_dir: str | Path, checkpoint_name: str = "causal_lm",
                    checkpoint_inputs: tuple = ()) -> TrainingSetup:
    """Build transformers' ``Trainer`` on documents packed into ``block_size`` blocks (not yet trained).

    With ``training.chunked_loss_tokens`` the trainer computes the loss in chunks of positions, never holding the
    full logits (``finetune.generation.chunked_loss``); the model is first checked to give the same loss both ways.

    Args:
        train: Documents (``text`` column), tokenized and packed here; or the blocks already made
            (``finetune.generation.tokenization.tokenize_documents`` with ``params.tokenization()``), read
            memory-mapped. Both give the same blocks, so the same training for the same seed.
        validation: The same for validation loss (may be empty).
        params: Model, method, optimisation and block size.
        output_dir: Work folder; the model is saved to ``<output_dir>/model``.
        checkpoint_name: The checkpoint folder's trainer name.
        checkpoint_inputs: What else decides the training, for the checkpoint key (a distillation's teacher and α).

    Raises:
        ValueError: Tokenized blocks made with another tokenizer or block size.
    """
    from transformers import Trainer, default_data_collator

    out = Path(output_dir)
    training = params.training
    placement = resolve_placement(training.device, training.precision)
    pretokenized = isinstance(train, TokenizedDataset)
    resolved, model, tokenizer = _load_base(params, placement, out, None if pretokenized else train["text"].tolist())
    block_size = effective_block_size(model.config, params.block_size)
    check_positions(model, params.method, block_size)
    if pretokenized:
        splits = _read_splits(train, validation, "causal_lm", tokenizer, max_length=block_size,
                              block_size=params.block_size)
        key_inputs = _fingerprints(training, train, validation)
    else:
        frames = {"train": train, **({} if validation.empty else {"validation": validation})}
        splits = {name: document_split(tokenizer, resolved.description, frame, name, block_size, params.block_size)
                  for name, frame in frames.items()}
        key_inputs = (train, validation)
    datasets = {name: dataset for name, (dataset, _) in splits.items()}
    tokenization = {name: stats["lengths"] | {"blocks": stats["rows"]} for name, (_, stats) in splits.items()}
    has_validation = "validation" in datasets
    prepared = prepare_model(model, params.method, tokenizer_path=resolved.name_or_path,
                             total_steps=_total_steps(training, len(datasets["train"])),
                             learning_rate=training.learning_rate, weight_decay=training.weight_decay)
    plan = checkpoint_plan(checkpoint_name, training.checkpoints, params, *key_inputs, *checkpoint_inputs)
    args = to_training_arguments(training, out / "checkpoints", placement, has_validation=has_validation,
                                 checkpoints=plan)
    # With chunked_loss_tokens the loss is computed from the hidden states in chunks (no full logits); None: the
    # model's own loss.
    trainer = with_chunked_loss(Trainer)(
        model=prepared.model, args=args, train_dataset=datasets["train"], eval_dataset=datasets.get("validation"),
        data_collator=default_data_collator, processing_class=tokenizer,
        callbacks=prepared.callbacks + early_stopping_callbacks(training, has_validation) + plan.callbacks(),
        optimizers=(prepared.optimizer, None), chunked_loss_tokens=training.chunked_loss_tokens,
    )
    return TrainingSetup(trainer, prepared, placement, tokenizer, resolved, params, out, has_validation, tokenization,
                         plan)
