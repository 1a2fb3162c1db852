"""Pacing functions against hand-computed values, and the curriculum sampler's guarantees."""

import math

import pytest
import torch
from torch.utils.data import RandomSampler

from finetune.curriculum import (
    PACING_FUNCTIONS,
    CurriculumSampler,
    easiest_first,
    optimizer_steps,
    pacing_fraction,
)

# total_steps = 100 → T = 0.9 × 100 = 90; the four points are t = 0, T/2 = 45, T = 90 and 2T = 180; c0 = 0.33.
# Values computed with `bc -l`, independently of the code under test:
# - linear:    45 × 0.67 / 90 + 0.33 = 0.665
# - root_n:    at T/2, ((1 − c0ⁿ)/2 + c0ⁿ)^(1/n); e.g. root_2: sqrt(0.8911/2 + 0.1089) = sqrt(0.55445) = 0.744614
# - geom:      at T/2, 2^(½·log₂c0) = sqrt(0.33) = 0.574456; at 2T, 2^(−log₂c0) = 1/0.33 → capped at 1
# - quadratic: c0^1.54 = 0.181368; (0.5 × 0.818632)² + 0.33 = 0.497548; at T (0.818632)² + 0.33 = 1.000192 → 1
# - cubic:     c0^1.87 = 0.125788; (0.5 × 0.874212)³ + 0.33 = 0.413516; at T (0.874212)³ + 0.33 = 0.998126
# - step:      45 lies in (0.33·90, 0.66·90] = (29.7, 59.4] → 0.66
# At 2T every function is capped at 1.
EXPECTED = {
    "standard_training": (1.0, 1.0, 1.0, 1.0),
    "linear": (0.33, 0.665, 1.0, 1.0),
    "root_2": (0.33, 0.744614, 1.0, 1.0),
    "root_5": (0.33, 0.871231, 1.0, 1.0),
    "root_10": (0.33, 0.933034, 1.0, 1.0),
    "root_20": (0.33, 0.965936, 1.0, 1.0),
    "root_50": (0.33, 0.986233, 1.0, 1.0),
    "geom_progression": (0.33, 0.574456, 1.0, 1.0),
    "quadratic": (0.33, 0.497548, 1.0, 1.0),
    "cubic": (0.33, 0.413516, 0.998126, 1.0),
    "step": (0.33, 0.66, 1.0, 1.0),
}


def test_every_pacing_function_has_hand_computed_values():
    assert set(EXPECTED) == set(PACING_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pacing_at_0_half_T_T_and_2T(name):
    got = [pacing_fraction(name, t, total_steps=100) for t in (0, 45, 90, 180)]
    assert got == pytest.approx(EXPECTED[name], abs=1e-6)


def test_pacing_is_non_decreasing_and_c0_moves_the_start():
    for name in PACING_FUNCTIONS:
        curve = [pacing_fraction(name, t, 50) for t in range(60)]
        assert all(b >= a for a, b in zip(curve, curve[1:], strict=False)), name
    assert pacing_fraction("linear", 0, 10, c0=0.5) == 0.5
    # T = 0.5 × 10 = 5: linear reaches 1 at step 5 instead of 9.
    assert pacing_fraction("linear", 5, 10, full_data_fraction=0.5) == 1.0


def test_pacing_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown pacing function 'root_3'"):
        pacing_fraction("root_3", 0, 10)
    with pytest.raises(ValueError, match="c0 must be in"):
        pacing_fraction("linear", 0, 10, c0=0.0)
    with pytest.raises(ValueError, match="total_steps"):
        pacing_fraction("linear", 0, 0)


def test_optimizer_steps_counts_like_the_trainer():
    # 100 rows, batch 16 → 7 micro-batches; accumulation 2 → ⌈7/2⌉ = 4 steps; 1.5 epochs → ⌈6⌉ = 6.
    assert optimizer_steps(100, 16, 2, epochs=1.5) == (4, 6)
    assert optimizer_steps(100, 16, 1, drop_last=True) == (6, 6)  # ⌊100/16⌋ = 6
    assert optimizer_steps(100, 16, 1, max_steps=3) == (7, 3)


def test_easiest_first_sorts_and_breaks_ties_by_seed():
    order = easiest_first([3.0, 1.0, 2.0, 1.0, 1.0], seed=0)
    assert sorted(order[:3]) == [1, 3, 4] and order.tolist()[3:] == [2, 0]
    ties = [easiest_first([0.0] * 20, seed=s).tolist() for s in (0, 1)]
    assert ties[0] != ties[1] and sorted(ties[0]) == list(range(20))
    with pytest.raises(ValueError, match="NaN"):
        easiest_first([0.0, math.nan])


@pytest.mark.parametrize("pacing", ["linear", "root_2", "geom_progression", "quadratic", "cubic", "step"])
@pytest.mark.parametrize(("batch", "accumulation"), [(4, 1), (3, 2), (8, 3)])
def test_sampler_never_draws_beyond_the_available_prefix(pacing, batch, accumulation):
    """Re-derive each index's step from its position and check its difficulty rank against ⌊f(t)·N⌋."""
    n = 50
    difficulties = [float((7 * i) % n) for i in range(n)]  # a permutation of 0..49: rank == difficulty
    _, total = optimizer_steps(n, batch, accumulation, epochs=3)
    sampler = CurriculumSampler(difficulties, pacing, batch, total, accumulation, seed=1)
    per_epoch = math.ceil(math.ceil(n / batch) / accumulation)
    seen_at_start = set()
    for epoch in range(3):
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert len(indices) == n
        for position, index in enumerate(indices):
            step = epoch * per_epoch + (position // batch) // accumulation
            limit = max(1, math.floor(pacing_fraction(pacing, step, total) * n + 1e-9))
            assert difficulties[index] < limit, (epoch, position, step)
            if step == 0:
                seen_at_start.add(index)
    # Step 0 draws only from the easiest ⌊0.33 × 50⌋ = 16 rows.
    assert max(difficulties[i] for i in seen_at_start) < 16


def test_sampler_batches_have_no_duplicates_while_the_prefix_is_large_enough():
    sampler = CurriculumSampler(list(range(40)), "linear", batch_size=8, total_steps=5)
    indices = list(sampler)
    for start in range(0, 40, 8):
        assert len(set(indices[start:start + 8])) == 8


def test_standard_training_is_the_ordinary_shuffled_sampler():
    generator_a, generator_b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    curriculum = CurriculumSampler([5.0, 1.0, 3.0] * 10, "standard_training", 4, 8, generator=generator_a)
    reference = RandomSampler(range(30), generator=generator_b)
    assert [list(curriculum) for _ in range(3)] == [list(reference) for _ in range(3)]


def test_a_curriculum_changes_the_order_and_the_seed_matters():
    difficulties = [float(i) for i in range(64)]
    first = list(CurriculumSampler(difficulties, "linear", 8, 8, seed=0))
    assert max(first[:8]) < 21  # step 0: ⌊0.33 × 64⌋ = 21 easiest rows
    assert first != list(CurriculumSampler(difficulties, "linear", 8, 8, seed=1))


def test_the_mixin_drives_a_plain_transformers_trainer_with_gradient_accumulation(tmp_path):
    """Trainer (and TRL's trainers built on it) take the sampler from ``_get_train_sampler``.

    20 rows whose label is their difficulty rank; batch 2 × accumulation 2, 5 steps → T = 4.5. Step 0 allows
    ⌊0.33·20⌋ = 6 rows, step 1 ⌊(0.67/4.5 + 0.33)·20⌋ = ⌊9.58⌋ = 9, step 2 ⌊(1.34/4.5 + 0.33)·20⌋ = ⌊12.56⌋ = 12.
    """
    import datasets
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from finetune.curriculum import Curriculum, with_curriculum

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=1)
    rows = datasets.Dataset.from_dict({"input_ids": [[1, 2 + i, 3] for i in range(20)],
                                       "labels": [float(i) for i in range(20)]})
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=2,
                             max_steps=5, report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True)
    trainer = with_curriculum(Trainer)(model=BertForSequenceClassification(config), args=args, train_dataset=rows,
                                       curriculum=Curriculum([float(i) for i in range(20)], "linear"))
    labels = [batch["labels"].tolist() for batch in trainer.get_train_dataloader()]
    limits = [6, 6, 9, 9, 12, 12]  # two micro-batches per optimizer step
    assert all(max(batch) < limit for batch, limit in zip(labels, limits, strict=False))
    assert trainer.curriculum_sampler.total_steps == 5
    trainer.train()
    assert trainer.state.global_step == 5


def test_the_paper_defaults_live_once_in_the_params():
    """c0 0.33 and T = 0.9 × steps are CurriculumSchedule's defaults; the core, the pipeline's params and the arm's
    training step read them from there instead of restating them."""
    import inspect

    from finetune.curriculum import DEFAULT_C0, DEFAULT_FULL_DATA_FRACTION, QueryCurriculum
    from finetune.params import CurriculumArm, CurriculumParams, CurriculumSchedule
    from steps.train.train_cross_encoder_curriculum import train_cross_encoder_curriculum

    schedule = CurriculumSchedule()
    assert (schedule.c0, schedule.full_data_fraction, schedule.seed) == (0.33, 0.9, 0)
    assert (DEFAULT_C0, DEFAULT_FULL_DATA_FRACTION) == (schedule.c0, schedule.full_data_fraction)
    assert QueryCurriculum({}).c0 == schedule.c0 and pacing_fraction("linear", 0, 10) == schedule.c0
    params = CurriculumParams(arms=(CurriculumArm(difficulty="random", pacing="linear"),), c0=0.5, seed=3)
    assert params.schedule == CurriculumSchedule(c0=0.5, seed=3)
    step_parameters = inspect.signature(train_cross_encoder_curriculum.entrypoint).parameters
    assert not {"c0", "full_data_fraction", "seed"} & set(step_parameters)
    assert step_parameters["schedule"].default is None
