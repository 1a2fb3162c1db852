"""Curriculum learning: pacing functions and a sampler that feeds easy instances first (Penha & Hauff 2020).

Penha & Hauff, "Curriculum Learning Strategies for IR" (ECIR 2020, arXiv 1912.08555): the training instances
are sorted by a difficulty score; at optimizer step ``t`` each batch is drawn uniformly from the easiest
``⌊f(t)·N⌋`` instances, where the pacing function ``f`` starts at ``c0`` and reaches 1 at step ``T``. The paper
uses ``c0 = 0.33`` and ``T = 0.9 × total steps``, so the last tenth of training sees the whole data set.

Nothing here knows about ranking: :class:`CurriculumSampler` takes one difficulty per dataset row, and
:class:`CurriculumTrainerMixin` adds it to any transformers ``Trainer`` subclass (sentence-transformers'
cross-encoder and bi-encoder trainers, TRL's ``SFTTrainer``). Difficulty functions for ranking live in
:mod:`finetune.ranking.curriculum`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import BatchSampler, RandomSampler, Sampler

from finetune.params import CurriculumSchedule

STANDARD = "standard_training"
ROOT_DEGREES = (2, 5, 10, 20, 50)
PACING_FUNCTIONS: tuple[str, ...] = (
    STANDARD,
    "linear",
    *(f"root_{n}" for n in ROOT_DEGREES),
    "geom_progression",
    "quadratic",
    "cubic",
    "step",
)
# The paper's c0 = 0.33 and T = 0.9 × total steps, defined once in finetune.params (the pipelines' defaults).
DEFAULT_C0 = CurriculumSchedule.model_fields["c0"].default
DEFAULT_FULL_DATA_FRACTION = CurriculumSchedule.model_fields["full_data_fraction"].default


def pacing_fraction(
    name: str,
    step: float,
    total_steps: int,
    c0: float = DEFAULT_C0,
    full_data_fraction: float = DEFAULT_FULL_DATA_FRACTION,
) -> float:
    """The fraction of the (difficulty-sorted) data available at optimizer step ``step``.

    With ``T = full_data_fraction × total_steps`` the paper's functions are, capped at 1:

    - ``linear``: ``t(1−c0)/T + c0``
    - ``root_n`` (n ∈ 2, 5, 10, 20, 50): ``(t(1−c0ⁿ)/T + c0ⁿ)^(1/n)``
    - ``geom_progression``: ``2^(t(log₂1 − log₂c0)/T + log₂c0)``
    - ``quadratic``: ``(t(1−c0^1.54)/T)² + c0`` and ``cubic``: ``(t(1−c0^1.87)/T)³ + c0`` (the exponents make
      them reach ≈1 at T: 1.0002 and 0.9981 for c0 = 0.33)
    - ``step``: 0.33 while ``t ≤ 0.33·T``, 0.66 while ``t ≤ 0.66·T``, then 1 (fixed thresholds, not c0)
    - ``standard_training``: always 1.

    Args:
        name: One of :data:`PACING_FUNCTIONS`.
        step: Optimizer step ``t`` (0-based).
        total_steps: Optimizer steps of the whole training run.
        c0: Initial fraction, in (0, 1].
        full_data_fraction: ``T`` as a fraction of ``total_steps``, in (0, 1].

    Returns:
        The fraction in (0, 1].

    Raises:
        ValueError: Unknown name, or an argument out of range.
    """
    if name not in PACING_FUNCTIONS:
        raise ValueError(f"unknown pacing function {name!r}; choose one of {list(PACING_FUNCTIONS)}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 < c0 <= 1.0:
        raise ValueError(f"c0 must be in (0, 1], got {c0}")
    if not 0.0 < full_data_fraction <= 1.0:
        raise ValueError(f"full_data_fraction must be in (0, 1], got {full_data_fraction}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    t, T = float(step), full_data_fraction * total_steps
    if name == STANDARD:
        fraction = 1.0
    elif name == "linear":
        fraction = t * (1 - c0) / T + c0
    elif name.startswith("root_"):
        n = int(name.removeprefix("root_"))
        fraction = (t * (1 - c0**n) / T + c0**n) ** (1 / n)
    elif name == "geom_progression":
        fraction = 2 ** (t * (math.log2(1.0) - math.log2(c0)) / T + math.log2(c0))
    elif name == "quadratic":
        fraction = (t * (1 - c0**1.54) / T) ** 2 + c0
    elif name == "cubic":
        fraction = (t * (1 - c0**1.87) / T) ** 3 + c0
    else:  # step
        fraction = 0.33 if t <= 0.33 * T else 0.66 if t <= 0.66 * T else 1.0
    return min(1.0, fraction)


def optimizer_steps(
    num_examples: int, batch_size: int, gradient_accumulation_steps: int = 1, epochs: float = 1.0,
    max_steps: int = -1, drop_last: bool = False,
) -> tuple[int, int]:
    """(steps per epoch, total steps) exactly as transformers' ``Trainer`` counts them.

    An epoch is ``⌈N / batch⌉`` micro-batches (``⌊N / batch⌋`` with ``drop_last``); every
    ``gradient_accumulation_steps`` of them, and the epoch's last (possibly shorter) group, make one optimizer
    step. Example: 100 rows, batch 16, accumulation 2 → 7 micro-batches → ⌈7/2⌉ = 4 steps per epoch; 1.5 epochs
    → ⌈1.5 × 4⌉ = 6 steps. ``max_steps > 0`` overrides the epochs.
    """
    batches = num_examples // batch_size if drop_last else math.ceil(num_examples / batch_size)
    per_epoch = max(math.ceil(batches / gradient_accumulation_steps), 1)
    total = max_steps if max_steps > 0 else math.ceil(epochs * per_epoch)
    return per_epoch, total


def easiest_first(difficulties: Sequence[float], seed: int = 0) -> np.ndarray:
    """Row indices sorted by ascending difficulty; ties in a seeded random order.

    Difficulty is often shared by many rows (every pair of a query, equal query lengths); a random tie order
    keeps the first prefixes from being biased towards whatever order the rows happen to be in.
    """
    values = np.asarray(difficulties, dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError("difficulties contain NaN; every training row needs a score")
    tiebreak = np.random.default_rng(seed).permutation(len(values))
    return np.lexsort((tiebreak, values))


class CurriculumSampler(Sampler[int]):
    """Draws each batch uniformly from the easiest ``⌊f(t)·N⌋`` rows, ``t`` being the optimizer step.

    The sampler yields ``N`` indices per epoch (as ``RandomSampler`` does), so the Trainer counts the same steps
    with or without a curriculum. Index ``i`` of epoch ``e`` belongs to micro-batch ``i // batch_size`` and
    hence to optimizer step ``e·steps_per_epoch + (i // batch_size) // gradient_accumulation_steps``. Within a
    step, rows come from a random permutation of the available prefix, so a batch has no duplicates while the
    prefix is at least a batch long; a fresh permutation starts whenever the prefix grows. With
    ``standard_training`` this is exactly ``RandomSampler(range(N), generator=generator)``.

    Args:
        difficulties: One score per dataset row; lower is easier.
        pacing: A name from :data:`PACING_FUNCTIONS`.
        batch_size: Rows per micro-batch (per device).
        gradient_accumulation_steps: Micro-batches per optimizer step.
        total_steps: Optimizer steps of the run (see :func:`optimizer_steps`).
        c0: Initial fraction.
        full_data_fraction: ``T`` as a fraction of ``total_steps``.
        drop_last: Whether the DataLoader drops the last partial micro-batch of an epoch.
        generator: Random source (a Trainer passes one seeded with ``args.seed``); seeded from ``seed`` if None.
        seed: Seed for the generator and for the order of equally difficult rows.
    """

    def __init__(
        self,
        difficulties: Sequence[float],
        pacing: str,
        batch_size: int,
        total_steps: int,
        gradient_accumulation_steps: int = 1,
        c0: float = DEFAULT_C0,
        full_data_fraction: float = DEFAULT_FULL_DATA_FRACTION,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        self.num_rows = len(difficulties)
        if self.num_rows == 0:
            raise ValueError("a curriculum needs at least one training row")
        pacing_fraction(pacing, 0, total_steps, c0, full_data_fraction)  # validates every argument
        self.pacing, self.total_steps, self.c0, self.full_data_fraction = pacing, total_steps, c0, full_data_fraction
        self.batch_size, self.gradient_accumulation_steps = batch_size, gradient_accumulation_steps
        self.steps_per_epoch, _ = optimizer_steps(self.num_rows, batch_size, gradient_accumulation_steps,
                                                  drop_last=drop_last)
        self.order = np.arange(self.num_rows) if pacing == STANDARD else easiest_first(difficulties, seed)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.epoch = 0
        self._pool: list[int] = []
        self._pool_size = 0
        self._random = RandomSampler(range(self.num_rows), generator=self.generator)

    def __len__(self) -> int:
        return self.num_rows

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer before each epoch; the step of every index follows from it."""
        self.epoch = epoch

    def available(self, step: int) -> int:
        """How many of the easiest rows may be drawn at optimizer ``step``: ``max(1, ⌊f(step)·N⌋)``."""
        fraction = pacing_fraction(self.pacing, min(step, self.total_steps), self.total_steps, self.c0,
                                   self.full_data_fraction)
        # The epsilon keeps 0.66 × 100 = 65.99999... at 66 rows.
        return max(1, min(self.num_rows, math.floor(fraction * self.num_rows + 1e-9)))

    def data_fractions(self) -> list[float]:
        """``available(t) / N`` for every optimizer step: the pacing curve as the sampler applies it."""
        return [self.available(t) / self.num_rows for t in range(self.total_steps)]

    def step_of(self, epoch: int, position: int) -> int:
        """Optimizer step of the ``position``-th index yielded in ``epoch``."""
        return epoch * self.steps_per_epoch + (position // self.batch_size) // self.gradient_accumulation_steps

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        self.epoch += 1  # a Trainer that never calls set_epoch still moves on
        if self.pacing == STANDARD:
            yield from self._random
            return
        for position in range(self.num_rows):
            size = self.available(self.step_of(epoch, position))
            if size != self._pool_size or not self._pool:
                self._pool = torch.randperm(size, generator=self.generator).tolist()
                self._pool_size = size
            yield int(self.order[self._pool.pop()])


class CurriculumBatchSampler(BatchSampler):
    """A ``BatchSampler`` over a :class:`CurriculumSampler` that forwards ``set_epoch`` (sentence-transformers)."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


@dataclass(frozen=True)
class Curriculum:
    """What a trainer needs to build a :class:`CurriculumSampler`: row difficulties and the pacing.

    Attributes:
        difficulties: One score per training row (lower is easier), in dataset order.
        pacing: A name from :data:`PACING_FUNCTIONS`.
        c0: Initial fraction.
        full_data_fraction: ``T`` as a fraction of the total optimizer steps.
        seed: Order of equally difficult rows (and the generator when the trainer gives none).
    """

    difficulties: Sequence[float]
    pacing: str = STANDARD
    c0: float = DEFAULT_C0
    full_data_fraction: float = DEFAULT_FULL_DATA_FRACTION
    seed: int = 0


@dataclass(frozen=True)
class QueryCurriculum:
    """A curriculum given per query (or any group key: a prompt id, a document id), spread over its rows.

    Attributes:
        scores: key -> difficulty (higher = harder); may be empty for ``standard_training``.
        pacing: A name from :data:`PACING_FUNCTIONS`.
        invert: Hardest first (the scores are negated).
        c0: Initial fraction.
        full_data_fraction: ``T`` as a fraction of the total optimizer steps.
        seed: Order of equally difficult rows.
    """

    scores: Mapping[str, float]
    pacing: str = STANDARD
    invert: bool = False
    c0: float = DEFAULT_C0
    full_data_fraction: float = DEFAULT_FULL_DATA_FRACTION
    seed: int = 0

    def for_rows(self, row_keys: Sequence[str]) -> Curriculum:
        """The row-level :class:`Curriculum`: each row gets its key's score.

        Raises:
            ValueError: A row's key has no score (unless pacing is ``standard_training``, which ignores them).
        """
        if self.pacing == STANDARD:
            difficulties = [0.0] * len(row_keys)
        else:
            missing = sorted({k for k in row_keys if k not in self.scores})
            if missing:
                raise ValueError(f"no difficulty for {len(missing)} keys, e.g. {missing[:5]}")
            sign = -1.0 if self.invert else 1.0
            difficulties = [sign * float(self.scores[k]) for k in row_keys]
        return Curriculum(difficulties, self.pacing, self.c0, self.full_data_fraction, self.seed)


class CurriculumTrainerMixin:
    """Adds a curriculum to a transformers ``Trainer`` subclass: ``class T(CurriculumTrainerMixin, Trainer)``.

    transformers' ``Trainer`` (and TRL's trainers) take their sampler from ``_get_train_sampler``;
    sentence-transformers' trainers take a batch sampler from ``get_batch_sampler``. Both are overridden for
    the training set only, so evaluation data loaders are untouched. The total number of optimizer steps is
    computed from the training arguments the way the Trainer computes it. Single-process training only: with
    several processes each would need its own shard of the curriculum.

    Args:
        curriculum: The curriculum, or None for the trainer's own sampler.
    """

    def __init__(self, *args, curriculum: Curriculum | None = None, **kwargs) -> None:
        self.curriculum = curriculum
        self.curriculum_sampler: CurriculumSampler | None = None
        super().__init__(*args, **kwargs)

    def _build_curriculum_sampler(self, dataset, batch_size: int, drop_last: bool,
                                  generator: torch.Generator | None) -> CurriculumSampler:
        curriculum, args = self.curriculum, self.args
        if len(curriculum.difficulties) != len(dataset):
            raise ValueError(f"curriculum has {len(curriculum.difficulties)} difficulties for "
                             f"{len(dataset)} training rows")
        _, total = optimizer_steps(len(dataset), batch_size, args.gradient_accumulation_steps,
                                   args.num_train_epochs, args.max_steps, drop_last)
        self.curriculum_sampler = CurriculumSampler(
            curriculum.difficulties, curriculum.pacing, batch_size, total, args.gradient_accumulation_steps,
            curriculum.c0, curriculum.full_data_fraction, drop_last, generator, curriculum.seed,
        )
        return self.curriculum_sampler

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.curriculum is None:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return self._build_curriculum_sampler(dataset, self.args.train_batch_size, self.args.dataloader_drop_last,
                                              torch.Generator().manual_seed(seed))

    def get_batch_sampler(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        if self.curriculum is None or dataset is not self.train_dataset:
            return super().get_batch_sampler(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        sampler = self._build_curriculum_sampler(dataset, batch_size, drop_last, generator)
        return CurriculumBatchSampler(sampler, batch_size, drop_last)


def with_curriculum(trainer_class: type) -> type:
    """``trainer_class`` with :class:`CurriculumTrainerMixin` mixed in (pass ``curriculum=`` when building it)."""
    return type(f"Curriculum{trainer_class.__name__}", (CurriculumTrainerMixin, trainer_class), {})
