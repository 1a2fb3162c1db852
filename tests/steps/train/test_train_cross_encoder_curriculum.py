"""train_cross_encoder_curriculum through ``.entrypoint()``: the pacing it reports, and standard training equal to
the plain step's.

linear pacing, c0 0.5, 4 steps, full data after 0.5 × 4 = 2 steps: t(1 − c0)/T + c0 = 0.5, 0.75, 1.0, 1.0.
"""

import pandas as pd
import pytest

import steps.train.train_cross_encoder_curriculum as module
from finetune.params import (
    CrossEncoderParams,
    CurriculumArm,
    CurriculumSchedule,
    MiningParams,
    TinyBertModel,
    TrainingParams,
)
from finetune.ranking.cross_encoder import mine_hard_negatives
from steps.train.train_cross_encoder import train_cross_encoder
from steps.train.train_cross_encoder_curriculum import train_cross_encoder_curriculum

ORDER = ["20", "21", "10", "12", "14", "16", "11", "13", "15", "17", "18", "19"]
PARAMS = CrossEncoderParams(model=TinyBertModel(vocab_size=200, seed=0), loss="bce", training=TrainingParams(
    max_steps=4, per_device_batch_size=4, learning_rate=3e-3, warmup_ratio=0.0, logging_steps=1, max_length=32,
    device="cpu", precision="fp32", seed=0))
DIFFICULTY = {"1": 0.1, "2": 0.2, "3": 0.3, "4": 0.4}


@pytest.fixture
def toy_pairs(toy_ranking) -> pd.DataFrame:
    run = {q: {pid: float(len(ORDER) - i) for i, pid in enumerate(ORDER)} for q in toy_ranking.queries}
    return mine_hard_negatives(toy_ranking, run, MiningParams(negatives_per_positive=3, positive_min_grade=2))


def test_a_curriculum_reports_its_pacing(toy_pairs, monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    arm = CurriculumArm(difficulty="query_length", pacing="linear")
    model_dir, log, fractions = train_cross_encoder_curriculum.entrypoint(
        toy_pairs, PARAMS, arm, DIFFICULTY, schedule=CurriculumSchedule(c0=0.5, full_data_fraction=0.5))
    assert fractions == pytest.approx([0.5, 0.75, 1.0, 1.0])
    assert recorded[0]["curriculum"] == "query_length_linear" and recorded[0]["optimizer_steps"] == 4
    assert model_dir.kind == "cross_encoder" and len([e for e in log if "loss" in e]) == 4


def test_standard_training_is_the_plain_steps_training_with_random_batches(toy_pairs, monkeypatch):
    """The plain step length-groups its batches by default, which the curriculum step ignores (it orders the rows
    itself): with ``length_grouped_batches`` on, its standard training equals the plain step's with it off."""
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    grouped = PARAMS.model_copy(update={"length_grouped_batches": True,
                                        "training": PARAMS.training.model_copy(update={"max_steps": 2})})
    _, log, fractions = train_cross_encoder_curriculum.entrypoint(toy_pairs, grouped)
    _, plain_log = train_cross_encoder.entrypoint(toy_pairs, grouped.model_copy(
        update={"length_grouped_batches": False}))
    assert fractions == [1.0] * 2 and recorded[0]["curriculum"] == "standard_training"
    losses = [e["loss"] for e in log if "loss" in e]
    assert losses == pytest.approx([e["loss"] for e in plain_log if "loss" in e], rel=1e-5)


def test_a_query_without_a_difficulty_is_named(toy_pairs):
    arm = CurriculumArm(difficulty="query_length", pacing="linear")
    with pytest.raises(ValueError, match=r"no difficulty for 1 keys, e.g. \['4'\]"):
        train_cross_encoder_curriculum.entrypoint(toy_pairs, PARAMS, arm, {"1": 0.1, "2": 0.2, "3": 0.3})

