"""What every trainer here shares: the common ``TrainingArguments`` keywords, and a timed ``train`` with its loss log.

The cross-encoder, dual-encoder, distillation and generation trainers each map our parameters onto their own
arguments class (``CrossEncoderTrainingArguments``, ``SentenceTransformerTrainingArguments``, ``TrainingArguments``,
``SFTConfig``); the keywords they have in common are built here once, so a change of meaning (transformers 5 reads a
float ``warmup_steps`` below 1 as a ratio) is made in one place.
"""

from __future__ import annotations

import time
from pathlib import Path

from finetune.device import Placement

LOGGED_KEYS = ("step", "loss", "grad_norm", "learning_rate", "epoch")


def common_training_arguments(params, output_dir: str | Path, placement: Placement) -> dict:
    """Keywords every transformers-based arguments class here takes, from a ``TrainingParams``-like model.

    Args:
        params: ``TrainingParams`` or ``GenerationTrainingParams`` (epochs, steps, batch, optimiser, seed).
        output_dir: Where the trainer writes checkpoints (if the caller enables them).
        placement: Resolved device and precision.

    Returns:
        A dict to spread into the arguments class, next to the caller's own keywords (saving, evaluation, ...).
    """
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=params.epochs,
        max_steps=params.max_steps,
        per_device_train_batch_size=params.per_device_batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        learning_rate=params.learning_rate,
        warmup_steps=params.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of total steps
        weight_decay=params.weight_decay,
        lr_scheduler_type=params.lr_scheduler,
        logging_steps=params.logging_steps,
        seed=params.seed,
        data_seed=params.seed,
        bf16=placement.bf16,
        fp16=placement.fp16,
        use_cpu=placement.use_cpu,
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def loss_history(log_history: list[dict]) -> list[dict]:
    """The training-loss entries of a trainer's ``state.log_history``: step (int), loss, grad norm, lr, epoch."""
    return [
        {k: int(v) if k == "step" else float(v) for k, v in entry.items() if k in LOGGED_KEYS}
        for entry in log_history
        if "loss" in entry
    ]


def train_and_save(trainer, model, model_dir: str | Path) -> tuple[float, list[dict]]:
    """Run ``trainer.train()``, save ``model`` to ``model_dir`` and return (train seconds, loss history)."""
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.save_pretrained(str(model_dir))
    return seconds, loss_history(trainer.state.log_history)
