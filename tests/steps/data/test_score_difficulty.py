"""score_difficulty through ``.entrypoint()``: per-query difficulty by the chosen function, with its summary.

Pairs (positive first): q1 "capital of france" (3 words) with passages of 7 and 6 words → mean 6.5;
q2 "what is the capital of germany" (6 words) with passages of 6 and 4 words → mean 5.
"""

import math

import pandas as pd
import pytest

import steps.data.score_difficulty as module
from finetune.models.directory import ModelDirectory
from finetune.models.sources import build_tiny_bert
from finetune.params import DifficultyParams, TinyBertModel
from steps.data.score_difficulty import score_difficulty

PAIRS = pd.DataFrame({
    "group": [0, 0, 1, 1], "qid": ["q1", "q1", "q2", "q2"],
    "query": ["capital of france"] * 2 + ["what is the capital of germany"] * 2,
    "pid": ["10", "18", "12", "21"],
    "passage": ["paris is the capital city of france", "the cat sat on the mat",
                "berlin is the capital of germany", "capital letters start sentences"],
    "grade": [2, 0, 2, 0], "role": ["positive", "negative", "positive", "negative"],
})


@pytest.fixture
def recorded(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(module, "record", calls.append)
    return calls


def test_length_functions_count_words(recorded):
    assert score_difficulty.entrypoint(PAIRS, DifficultyParams(name="query_length")) == {"q1": 3.0, "q2": 6.0}
    assert recorded == [{"difficulty": "query_length", "queries": 2.0, "min": 3.0, "median": 4.5, "max": 6.0}]
    assert score_difficulty.entrypoint(PAIRS, DifficultyParams(name="candidate_length")) == {"q1": 6.5, "q2": 5.0}


def test_random_difficulty_follows_its_seed(recorded):
    first = score_difficulty.entrypoint(PAIRS, DifficultyParams(name="random", seed=1))
    assert first == score_difficulty.entrypoint(PAIRS, DifficultyParams(name="random", seed=1))
    assert first != score_difficulty.entrypoint(PAIRS, DifficultyParams(name="random", seed=2))
    assert all(0.0 <= v < 1.0 for v in first.values())


def test_model_loss_needs_the_trained_model_and_reads_its_logits(tmp_path, recorded):
    """An untrained tiny cross-encoder gives logits near 0: BCE ≈ ln 2 per candidate, sigmoid ≈ 0.5 per positive."""
    with pytest.raises(ValueError, match="'model_loss' needs a trained cross-encoder"):
        score_difficulty.entrypoint(PAIRS, DifficultyParams(name="model_loss"))
    path = build_tiny_bert(TinyBertModel(vocab_size=100, hidden_size=16), tmp_path / "ce",
                           PAIRS["query"].tolist() + PAIRS["passage"].tolist())
    model_dir = ModelDirectory(path, "cross_encoder")
    loss = score_difficulty.entrypoint(PAIRS, DifficultyParams(name="model_loss", max_length=32), model_dir)
    assert set(loss) == {"q1", "q2"} and all(v == pytest.approx(math.log(2), abs=0.05) for v in loss.values())
    prediction = score_difficulty.entrypoint(PAIRS, DifficultyParams(name="model_prediction", max_length=32),
                                             model_dir)
    assert all(v == pytest.approx(-0.5, abs=0.05) for v in prediction.values())
