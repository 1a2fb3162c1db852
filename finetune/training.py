"""What every trainer here shares: the common ``TrainingArguments`` keywords, checkpoints that let a killed run resume,
and a timed ``train`` with its loss log.

The cross-encoder, dual-encoder, distillation and generation trainers each map our parameters onto their own
arguments class (``CrossEncoderTrainingArguments``, ``SentenceTransformerTrainingArguments``, ``TrainingArguments``,
``SFTConfig``); the keywords they have in common are built here once, so a change of meaning (transformers 5 reads a
float ``warmup_steps`` below 1 as a ratio) is made in one place.

Checkpoints go to ``<root>/<trainer>/<key>``: the key hashes the training parameters and inputs (``fingerprint``), so
the same command started again after a kill (SIGKILL, a lost node, an out-of-memory kill) finds the folder and
``trainer.train(resume_from_checkpoint=...)`` continues from the last checkpoint with the saved optimizer, scheduler,
RNG and data position, instead of starting over. ZenML's run id never enters the key: a re-run is a new run.
Once a run has completed, its folder is deleted (unless ``checkpoints.keep``): by ``CheckpointPlan.finish`` after
the final model is saved, or, when a caller trains a ``*_setup`` trainer itself (``trainer.train()``, as the
benchmarks do), by the plan's callback when ``train()`` returns normally (``CheckpointPlan.callbacks``). Only a
killed or failed run leaves its checkpoints, for the next call to resume from.

Every ``trainer.train()`` here runs under a ``DivergenceGuard`` (``run_trainer``): the first update whose loss or
gradient norm is NaN/inf stops training with a one-line ``FloatingPointError`` instead of training on, and saving,
NaN weights; the save itself refuses non-finite weights (``finetune.models.directory.save_model_directory``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from finetune.device import Placement
from finetune.models.directory import save_model_directory

logger = logging.getLogger(__name__)

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
        disable_tqdm=True,
        **device_arguments(placement),
    )


def dataloader_workers(device: str, cpu_count: int | None) -> int:
    """Data-loading worker processes: none off CUDA, else up to 4, leaving half the cores to the training process.

    sentence-transformers' collators tokenise every batch in Python; in the training process that work sits
    between two steps while the GPU waits. Workers tokenise the next batches meanwhile. On a CPU run they would
    only take cores from the matrix products (2 cores: 0 workers).
    """
    if device != "cuda":
        return 0
    return max(0, min(4, (cpu_count or 1) // 2))


def device_arguments(placement: Placement) -> dict:
    """The ``TrainingArguments`` keywords that decide how the host feeds the device (one place, explicit).

    - ``optim="adamw_torch_fused"``: one fused kernel per parameter group for the AdamW update instead of a few
      per tensor. It is transformers' own default since torch 2.8, on every device; pinned here so that a change
      of default cannot slip in unnoticed.
    - ``dataloader_pin_memory`` on CUDA only: batches go to page-locked host memory, so the copy to the GPU is a
      direct DMA that can overlap compute; off CUDA there is nothing to pin for.
    - ``dataloader_num_workers`` / ``dataloader_persistent_workers``: :func:`dataloader_workers`.
    - ``logging_nan_inf_filter=False``: with it the Trainer reads every micro-batch's loss on the host
      (``torch.isnan(loss)`` in a Python ``if``: a device sync per micro-batch) to keep NaN out of the logged mean.
      Every trainer here runs under :class:`DivergenceGuard`, which stops the run at the first non-finite update
      anyway, with one sync per update.
    """
    cuda = placement.device == "cuda"
    workers = dataloader_workers(placement.device, os.cpu_count())
    return dict(optim="adamw_torch_fused", dataloader_pin_memory=cuda, dataloader_num_workers=workers,
                dataloader_persistent_workers=workers > 0, logging_nan_inf_filter=False)


def seed_before_building(seed: int) -> None:
    """Seed Python, NumPy and torch (``transformers.set_seed``) before a model is built or loaded.

    The Trainer seeds only when it is constructed, after the model: weights a load creates (a cross-encoder's
    classifier on a bi-encoder checkpoint, a reward head, LoRA's A matrices) would otherwise come from the process's
    unseeded random state, which differs per run. That is why the same DL19 cross-encoder config once gave nDCG@10
    0.3292 and once 0.3175: all-MiniLM-L6-v2 has no classifier, so each run drew a new one.
    """
    from transformers import set_seed

    set_seed(seed)


def loss_history(log_history: list[dict]) -> list[dict]:
    """The training-loss entries of a trainer's ``state.log_history``: step (int), loss, grad norm, lr, epoch."""
    return [
        {k: int(v) if k == "step" else float(v) for k, v in entry.items() if k in LOGGED_KEYS}
        for entry in log_history
        if "loss" in entry
    ]


def _digest_path(path: Path, digest) -> None:
    """Feed a file's bytes, or every file of a folder (sorted relative paths and bytes), into ``digest``."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files and not path.exists():
        raise FileNotFoundError(f"{path}: cannot fingerprint a path that does not exist")
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)


def _update(digest, value) -> None:
    """Feed one input into ``digest``: plain values as JSON, tables by content, paths by their bytes."""
    import numpy as np
    import pandas as pd
    from pydantic import BaseModel

    from finetune.params import CheckpointParams, LocalModel

    if isinstance(value, CheckpointParams):
        digest.update(b"<checkpoints>")  # where and how often to checkpoint does not change what is trained
    elif isinstance(value, LocalModel):
        # By content: a pipeline hands the step a fresh materialised copy of the same model each run.
        digest.update(b"<local model>")
        _digest_path(Path(value.path), digest)
        _update(digest, value.model_dump(exclude={"path"}))
    elif isinstance(value, BaseModel):
        digest.update(type(value).__name__.encode())
        for name in type(value).model_fields:
            digest.update(name.encode() + b"=")
            _update(digest, getattr(value, name))
    elif isinstance(value, Path):
        _digest_path(value, digest)
    elif isinstance(value, pd.DataFrame | pd.Series):
        names = value.columns if isinstance(value, pd.DataFrame) else [value.name]
        digest.update(json.dumps([str(c) for c in names]).encode())
        digest.update(pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes())
    elif isinstance(value, np.ndarray):
        digest.update(str(value.dtype).encode() + str(value.shape).encode() + value.tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(type(value).__name__.encode())
        for f in dataclasses.fields(value):
            digest.update(f.name.encode() + b"=")
            _update(digest, getattr(value, f.name))
    elif isinstance(value, dict) or hasattr(value, "items"):
        digest.update(b"{")
        for key in sorted(value, key=str):
            digest.update(json.dumps(str(key)).encode() + b":")
            _update(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, list | tuple):
        digest.update(b"[")
        for item in value:
            _update(digest, item)
        digest.update(b"]")
    elif value is None or isinstance(value, str | int | float | bool):
        digest.update(json.dumps(value).encode())
    else:
        raise TypeError(f"cannot fingerprint a {type(value).__name__} for the checkpoint key")
    digest.update(b";")


def fingerprint(*inputs) -> str:
    """A sha256 (hex) of training inputs: parameter models field by field (``CheckpointParams`` left out, so a new
    interval or root still finds the run's checkpoints), ``LocalModel`` folders and paths by their bytes, data frames
    by their content, dataclasses, dicts (sorted keys), lists and plain values."""
    digest = hashlib.sha256()
    for value in inputs:
        _update(digest, value)
    return digest.hexdigest()


@dataclass(frozen=True)
class CheckpointPlan:
    """Where one training run checkpoints (``directory`` is None when checkpoints are off) and how.

    Attributes:
        directory: ``<root>/<trainer>/<key>``, the Trainer's ``output_dir``.
        every_steps: Optimizer steps between checkpoints.
        save_total_limit: Newest checkpoints kept.
        keep: Keep the folder after the final model is saved.
    """

    directory: Path | None = None
    every_steps: int | None = None
    save_total_limit: int = 1
    keep: bool = False

    def arguments(self) -> dict:
        """Saving keywords for a transformers arguments class (``save_strategy="no"`` when off).

        ``save_only_model=False``: a checkpoint without the optimizer, scheduler and RNG states cannot resume exactly.
        """
        if self.directory is None:
            return {"save_strategy": "no"}
        return {"output_dir": str(self.directory), "save_strategy": "steps", "save_steps": self.every_steps,
                "save_total_limit": self.save_total_limit, "save_only_model": False}

    def last_checkpoint(self) -> tuple[Path, int] | None:
        """The newest complete ``checkpoint-<step>`` folder a previous attempt left, with its step.

        The Trainer writes ``trainer_state.json`` last and not atomically, so a run killed while saving leaves a
        folder without it, or with a truncated one: such folders are passed over for the one before.
        """
        if self.directory is None or not self.directory.is_dir():
            return None
        folders = [p for p in self.directory.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
        for folder in sorted(folders, key=lambda p: int(p.name[11:]), reverse=True):
            try:
                state = json.loads((folder / "trainer_state.json").read_text())
            except (OSError, ValueError):
                logger.warning("ignoring incomplete checkpoint %s", folder)
                continue
            return folder, int(state["global_step"])
        return None

    def finish(self) -> None:
        """After the final model is saved: delete the checkpoints unless ``keep``, and release the folder."""
        if self.directory is None:
            return
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)
        _release(self.directory)

    def callbacks(self) -> list:
        """Trainer callbacks for a trainer that a caller may train itself, outside ``run_trainer`` (``[]`` when off).

        The Trainer saves a checkpoint at its last step whatever the interval (the full state: weights plus about
        twice their size in Adam state, ~6 GB for a 0.5 B model), and only ``finish`` deletes the folder. A caller
        that runs ``setup.trainer.train()`` itself (benchmarks, notebooks) never calls it, so every such run left
        its checkpoints behind. The callback calls ``finish`` when ``train()`` completes (``on_train_end``: not
        after an exception or a kill, whose checkpoints are what a re-run resumes from). Under ``run_trainer`` it
        does nothing: there the caller saves the final model first and then calls ``finish``, so a kill during
        that save still resumes from the last checkpoint.
        """
        return [] if self.directory is None else [_finish_callback(self)]


# Folders this process trains in, each with an open descriptor holding an exclusive flock on its ``.lock`` file.
_HELD: dict[Path, int] = {}
# Folders whose ``trainer.train()`` is running inside ``run_trainer``, whose caller calls ``finish`` after the save.
_MANAGED: set[Path] = set()


def _finish_callback(plan: CheckpointPlan):
    """A ``TrainerCallback`` that calls ``plan.finish()`` once when ``train()`` completes outside ``run_trainer``."""
    from transformers import TrainerCallback

    class FinishCheckpoints(TrainerCallback):
        def __init__(self):
            self.done = False

        def on_train_end(self, args, state, control, **kwargs):
            if self.done or plan.directory.resolve() in _MANAGED:
                return
            self.done = True
            plan.finish()

    return FinishCheckpoints()


def _claim(directory: Path) -> bool:
    """Take the folder for this process (True), unless another live process holds it (False).

    The kernel drops a flock when its process dies, so a folder whose trainer was killed is free again at once.
    """
    key = directory.resolve()
    if key in _HELD:
        return True
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _HELD[key] = fd
    return True


def _release(directory: Path) -> None:
    fd = _HELD.pop(directory.resolve(), None)
    if fd is not None:
        os.close(fd)


def checkpoint_plan(trainer: str, params, *inputs) -> CheckpointPlan:
    """The checkpoint plan of a run of ``trainer`` (``cross_encoder``, ``sft``, ...) on ``inputs``.

    The folder is held with a lock until ``finish``: a second process training the very same run at the same time
    (same key) gets no checkpoints instead of writing into, rotating or deleting the first one's.

    Args:
        trainer: Names the folder under the root, so people can tell runs apart.
        params: ``CheckpointParams`` (``every_steps`` None: off).
        inputs: Everything that decides what is trained: the parameter model, the training data, starting weights.
    """
    if params.every_steps is None:
        return CheckpointPlan()
    directory = Path(params.root) / trainer / fingerprint(trainer, *inputs)[:20]
    if not _claim(directory):
        logger.warning("another process is training the same run in %s; this one keeps no checkpoints", directory)
        return CheckpointPlan()
    return CheckpointPlan(directory, params.every_steps, params.save_total_limit, params.keep)


@dataclass
class TrainRun:
    """One ``trainer.train()``: wall time, the step it resumed from (0: a fresh start) and the loss history."""

    seconds: float
    resumed_from_step: int = 0
    history: list[dict] = field(default_factory=list)


class DivergenceGuard:
    """Stands in for a trainer's ``training_step`` and stops training at the first non-finite update.

    Every trainer here (transformers ``Trainer``, TRL's SFT/DPO/reward/RLOO/GRPO, sentence-transformers' cross- and
    bi-encoder trainers, the curriculum mixin) runs each micro-batch through ``self.training_step``, which returns
    the micro-batch's loss after its backward pass. The guard keeps those losses as tensors, and on the micro-batch
    that completes an update (``accelerator.sync_gradients``: gradients accumulated and, under DDP, all-reduced;
    not yet clipped or applied) reads the update's loss and total gradient norm in one host sync. That sync is why
    the Trainer's own per-micro-batch NaN check (``logging_nan_inf_filter``) is off (``device_arguments``); the
    cost here is the one sync per update and the norm, one read of the gradients as ``clip_grad_norm_`` does right
    after: measured 0.15 ms an update for a 0.1M-parameter GPT-2 on
    one CPU thread (under 1% of its ~20 ms step) and 0.9 ms for GPT-2 124M on an H200 (~2% of a 4096-token bf16
    step of ~40 ms, within the step times' noise).

    The logged loss cannot be used: the Trainer logs only every ``logging_steps`` and replaces a NaN loss by the
    running mean (a diverged cross-encoder logs ``loss 0.0, grad_norm nan``).

    Under fp16 a ``GradScaler`` multiplies the loss by up to 2^16 before backward; inf/NaN gradients then only mean
    the scale was too high, and the scaler skips that optimizer step and halves the scale. That is routine, so with a
    scaler only the loss (which ``training_step`` returns unscaled) is checked. bf16 and fp32 have no scaler: an
    inf/NaN gradient there would be applied to the weights.
    """

    def __init__(self, trainer, name: str):
        self.trainer, self.name = trainer, name
        self.training_step = trainer.training_step
        self.losses: list = []

    def __call__(self, *args, **kwargs):
        loss = self.training_step(*args, **kwargs)
        self.losses.append(loss.detach())
        if self.trainer.accelerator.sync_gradients:
            self.check()
        return loss

    def check(self) -> None:
        """Check the update just accumulated (raising before the optimizer applies it).

        Raises:
            FloatingPointError: One line naming the trainer, the update, the loss, the gradient norm and the remedy.
        """
        import torch

        trainer = self.trainer
        loss = torch.stack(self.losses).sum().float()  # micro-batch losses are already divided by accumulation steps
        self.losses.clear()
        scaled = trainer.accelerator.scaler is not None
        grads = [] if scaled else [p.grad for p in trainer.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads).float().to(loss.device) if grads else torch.zeros_like(loss)
        loss_value, norm_value = torch.stack([loss, norm]).tolist()
        if math.isfinite(loss_value) and math.isfinite(norm_value):
            return
        args, state = trainer.args, trainer.state
        grad = "not checked under fp16 loss scaling" if scaled else f"{norm_value:.4g}"
        remedy = f"lower learning_rate ({float(args.learning_rate)})"
        if args.bf16 or args.fp16:
            remedy += " or use precision: fp32"
        raise FloatingPointError(f"{self.name}: training diverged at update {state.global_step + 1} of "
                                 f"{state.max_steps}: loss is {loss_value:.4g} (grad norm {grad}); {remedy}")


@contextmanager
def divergence_guard(trainer, name: str) -> Iterator[DivergenceGuard]:
    """Run ``trainer`` under a ``DivergenceGuard`` for the block; its own ``training_step`` is restored after."""
    own = vars(trainer).get("training_step")  # None: the class's method, which deleting the attribute brings back
    guard = DivergenceGuard(trainer, name)
    trainer.training_step = guard
    try:
        yield guard
    finally:
        if own is None:
            del trainer.training_step
        else:
            trainer.training_step = own


def run_trainer(trainer, plan: CheckpointPlan | None = None, name: str | None = None) -> TrainRun:
    """``trainer.train()``, resumed from ``plan``'s last checkpoint when a killed attempt left one.

    The Trainer restores weights, optimizer, scheduler, RNG states and the step, and skips the batches already
    trained, so the resumed run continues the same sequence of updates (on CPU the result equals an uninterrupted
    run's bit for bit: tests/reliability/test_resume.py). Training runs under a ``DivergenceGuard``.

    Args:
        trainer: A transformers ``Trainer`` (or subclass), ready to train.
        plan: Where the run checkpoints; None: no checkpoints.
        name: What is trained, for the divergence error (``train_cross_encoder``); default: the trainer's class.

    Raises:
        FloatingPointError: The loss or the gradient norm of an update is NaN or infinite.
    """
    found = plan.last_checkpoint() if plan is not None else None
    if found is not None:
        logger.warning("resuming training from %s (step %d)", *found)
    managed = plan.directory.resolve() if plan is not None and plan.directory is not None else None
    if managed is not None:
        _MANAGED.add(managed)  # the caller calls plan.finish() after its save: the plan's callback stands aside
    start = time.perf_counter()
    try:
        with divergence_guard(trainer, name or type(trainer).__name__):
            trainer.train(resume_from_checkpoint=None if found is None else str(found[0]))
    finally:
        _MANAGED.discard(managed)
    return TrainRun(time.perf_counter() - start, 0 if found is None else found[1],
                    loss_history(trainer.state.log_history))


def train_and_save(trainer, model, model_dir: str | Path, plan: CheckpointPlan | None = None,
                   name: str | None = None) -> TrainRun:
    """Run the trainer (resuming per ``plan``, named ``name`` in a divergence error), save ``model`` to
    ``model_dir`` (whole or not at all: ``save_model_directory``), then drop the plan's checkpoints."""
    run = run_trainer(trainer, plan, name)
    save_model_directory(model, model_dir, lambda path: model.save_pretrained(str(path)))
    if plan is not None:
        plan.finish()
    return run
