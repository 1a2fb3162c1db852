"""The seed sweep of the real-data recipes: which seeds change, and how per-query metrics are averaged."""

import pytest

from bench.ranking_msmarco import mean_over_seeds, training_seed
from bench.run_seeds import main, with_training_seed


def test_every_training_section_gets_the_seed_and_nothing_else_changes():
    config = {"parameters": {"mining": {"seed": 0, "depth": 20},
                             "cross_encoder": {"training": {"seed": 42, "epochs": 1}},
                             "curriculum": {"arms": [{"training": {"seed": 1}}]}}}
    seeded, count = with_training_seed(config, 7)
    assert count == 2
    assert seeded["parameters"]["cross_encoder"]["training"] == {"seed": 7, "epochs": 1}
    assert seeded["parameters"]["curriculum"]["arms"][0]["training"]["seed"] == 7
    assert seeded["parameters"]["mining"] == {"seed": 0, "depth": 20}        # data sampling keeps its seed
    assert config["parameters"]["cross_encoder"]["training"]["seed"] == 42   # the input is not modified


def test_a_config_without_training_section_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("parameters:\n  data: {}\n")
    with pytest.raises(SystemExit, match="bad.yaml: no 'training' section"):
        main(["pipelines.ranking.cross_encoder_training", str(path), "--seeds", "1"])


def test_training_seed_is_read_from_nested_parameters():
    assert training_seed({"data": {"seed": 3}, "student": {"training": {"seed": 44}}}) == 44
    assert training_seed({"data": {"seed": 3}}) is None


def test_mean_over_seeds_averages_per_query_and_drops_runs_a_seed_lacks():
    def metrics(a, b):
        return {"ndcg@10": {"q1": a, "q2": b}, "mrr@10": {"q1": a, "q2": b}}

    first = {"bm25": metrics(0.5, 0.1), "reranker": metrics(0.6, 0.2), "fused": metrics(0.7, 0.3)}
    second = {"bm25": metrics(0.5, 0.1), "reranker": metrics(0.8, 0.4)}
    mean = mean_over_seeds([first, second])
    assert set(mean) == {"bm25", "reranker"}
    assert mean["reranker"]["ndcg@10"] == pytest.approx({"q1": 0.7, "q2": 0.3})
    assert mean["bm25"]["mrr@10"] == pytest.approx({"q1": 0.5, "q2": 0.1})
