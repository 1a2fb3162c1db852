"""select_best_model through ``.entrypoint()``: the best arm's directory becomes the run's ``model_dir``."""

from pathlib import Path

import pytest

import steps.registry.select_best_model as module
from finetune.models.directory import ModelDirectory
from steps.registry.select_best_model import select_best_model

ARMS = ["standard_training", "bm25_root_2", "length_linear"]
DIRS = [ModelDirectory(Path(f"/models/{arm}"), "cross_encoder", "tiny_bert", 100 + i) for i, arm in enumerate(ARMS)]


def test_the_named_arm_is_chosen_by_position_and_recorded(monkeypatch):
    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    chosen = select_best_model.entrypoint(DIRS, ARMS, "bm25_root_2")
    assert chosen is DIRS[1] and chosen.num_parameters == 101
    assert recorded == [{"best_arm": "bm25_root_2"}]


def test_an_unknown_arm_is_named_with_the_arms_there_are():
    with pytest.raises(ValueError, match=r"best arm 'bm25_linear' is not one of \['standard_training', "):
        select_best_model.entrypoint(DIRS, ARMS, "bm25_linear")
