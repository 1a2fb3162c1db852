"""select_best_method through ``.entrypoint()``: the winner's metrics under their own names plus everyone's."""

import pandas as pd
import pytest

import steps.registry.select_best_method as module
from steps.registry.select_best_method import select_best_method

# As collect_method_result builds it: a method that did not measure something has NaN there.
RESULTS = pd.DataFrame([
    {"method": "full", "test_rougeL": 0.40, "test_perplexity": 9.0, "test_mc_accuracy": 0.50},
    {"method": "lora", "test_rougeL": 0.45, "test_perplexity": 11.0, "test_mc_accuracy": float("nan")},
    {"method": "prefix", "test_rougeL": float("nan"), "test_perplexity": 30.0, "test_mc_accuracy": 0.25},
])


@pytest.fixture
def recorded(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(module, "record", calls.append)
    return calls


def test_the_highest_rouge_wins_and_every_method_is_kept_under_its_name(recorded):
    metrics, best, per_item = select_best_method.entrypoint(RESULTS, "test_rougeL")
    assert best == "lora" and recorded == [{"best_method": "lora"}]
    assert metrics == {
        "test_rougeL": 0.45, "test_perplexity": 11.0,  # the winner's own numbers, without its NaN accuracy
        "full_test_rougeL": 0.40, "full_test_perplexity": 9.0, "full_test_mc_accuracy": 0.50,
        "lora_test_rougeL": 0.45, "lora_test_perplexity": 11.0,
        "prefix_test_perplexity": 30.0, "prefix_test_mc_accuracy": 0.25,
    }
    assert per_item == {}  # no per-item values were given


def test_the_untuned_row_is_recorded_but_never_chosen_and_the_winners_items_are_returned(recorded):
    """The untuned base model is the baseline row: even with the best ROUGE-L it is not a candidate; its numbers
    are kept as untuned_<metric>, which the gate compares the winner with."""
    results = pd.concat([pd.DataFrame([{"method": "untuned", "test_rougeL": 0.9, "test_perplexity": 8.0}]), RESULTS],
                        ignore_index=True)
    items = {"untuned": {"a": 0.9}, "lora": {"a": 0.45}, "full": {"a": 0.4}}
    metrics, best, per_item = select_best_method.entrypoint(results, "test_rougeL", items)
    assert best == "lora" and per_item == {"a": 0.45}
    assert metrics["test_rougeL"] == 0.45 and metrics["untuned_test_rougeL"] == 0.9


def test_lower_perplexity_wins_when_it_is_the_primary_metric(recorded):
    metrics, best, _ = select_best_method.entrypoint(RESULTS, primary_metric="test_perplexity")
    assert best == "full" and metrics["test_perplexity"] == 9.0 and metrics["test_mc_accuracy"] == 0.50


def test_a_metric_no_method_measured_is_named_with_what_was_measured():
    with pytest.raises(ValueError, match=r"no method has test_bleu; measured: \['method', 'test_mc_accuracy', "):
        select_best_method.entrypoint(RESULTS, primary_metric="test_bleu")
