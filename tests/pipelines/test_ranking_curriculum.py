"""ranking_curriculum end to end on a throw-away ZenML store, with a tiny BERT on generated MS MARCO files."""

import math
import uuid

import pytest
import yaml

from finetune.curriculum import pacing_fraction
from finetune.data.demo import write_demo_msmarco

pytestmark = pytest.mark.slow


def _config(tmp_path, files, model_name, arms):
    source = {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}}
    config = {
        "model": {"name": model_name},
        "parameters": {
            "data": {"train": source, "eval_fraction": 0.25, "split_seed": 1},
            "retrieval": {"k": 12},
            "mining": {"negatives_per_positive": 3, "depth": 12, "max_positives_per_query": 1},
            "cross_encoder": {
                "model": {"kind": "tiny_bert", "vocab_size": 300},
                "training": {"max_steps": 8, "per_device_batch_size": 8, "learning_rate": 1e-3,
                             "max_length": 64, "logging_steps": 2, "device": "cpu", "precision": "fp32"},
            },
            "curriculum": {"arms": arms, "semantic_model": {"kind": "tiny_bert", "vocab_size": 300}},
            "evaluation": {"rerank_depth": 12, "metrics": ["ndcg@10", "mrr@10"], "relevance_level": 2},
        },
    }
    path = tmp_path / "ranking_curriculum.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(config_path):
    from pipelines.ranking import ranking_curriculum

    return ranking_curriculum.with_options(config_path=str(config_path))()


def test_curricula_against_standard_then_a_new_pacing_reuses_the_difficulty_scores(tmp_path, zenml_client):
    from zenml.enums import ModelStages

    from cli.config_check import validate_config

    files = write_demo_msmarco(tmp_path / "data", num_queries=16, passages_per_query=12, seed=3)
    model_name = f"curriculum_{uuid.uuid4().hex[:8]}"
    arms = [{"difficulty": "bm25_std", "pacing": "root_2"}, {"difficulty": "model_loss", "pacing": "step"},
            {"difficulty": "semantic_std", "pacing": "linear", "invert": True}]
    config = _config(tmp_path, files, model_name, arms)
    assert validate_config(config) == []

    run = zenml_client.get_pipeline_run(_run(config).id)
    assert str(run.status) == "completed"
    names = ["standard_training", "bm25_std_root_2", "model_loss_step", "semantic_std_linear_inverted"]
    fractions = {n: run.steps[f"train_{n}"].outputs["data_fraction"][0].load() for n in names}
    assert {len(f) for f in fractions.values()} == {8}  # the same 8 optimizer steps for every arm
    assert fractions["standard_training"] == [1.0] * 8
    rows = len(run.steps["mine_hard_negatives"].outputs["train_pairs"][0].load())
    for name, pacing in zip(names[1:], ("root_2", "step", "linear"), strict=True):
        assert fractions[name] == [math.floor(pacing_fraction(pacing, t, 8) * rows + 1e-9) / rows for t in range(8)]
        assert fractions[name][0] == math.floor(0.33 * rows) / rows

    metrics = run.steps["evaluate_curricula"].outputs["metrics"][0].load()
    best = run.steps["evaluate_curricula"].outputs["best_arm"][0].load()
    assert best == max(names, key=lambda n: (metrics[f"{n}_test_ndcg@10"], n == "standard_training"))
    assert metrics["test_ndcg@10"] == metrics[f"{best}_test_ndcg@10"]
    assert all(0.0 <= metrics[f"p_value_{n}_test_ndcg@10"] <= 1.0 for n in names[1:])
    # The untrained starting model reranks the same candidates; the best arm is tested against it.
    assert 0.0 <= metrics["zero_shot_test_ndcg@10"] <= 1.0
    assert 0.0 <= metrics["p_value_test_ndcg@10_vs_zero_shot"] <= 1.0
    decision = run.steps["promote_model"].outputs["promotion_decision"][0].load()
    assert decision["promote"] == (metrics["test_ndcg@10"] > metrics["bm25_test_ndcg@10"])
    version = zenml_client.get_model_version(model_name, 1)
    assert version.stage == (ModelStages.PRODUCTION if decision["promote"] else ModelStages.STAGING)
    best_dir = run.steps["select_best_model"].outputs["model_dir"][0].load()
    trained_dir = run.steps[f"train_{best}"].outputs["trained_model_dir"][0].load()
    assert best_dir.files() == trained_dir.files()
    assert (best_dir.path / "model.safetensors").read_bytes() == (trained_dir.path / "model.safetensors").read_bytes()
    report = run.steps["build_curriculum_report"].outputs["report"][0].load()
    assert report.count("data:image/png;base64,") == 3 and "semantic_std_linear_inverted" in report

    # Another pacing for the same difficulty: the scores and the standard model come from the cache.
    arms[0] = {"difficulty": "bm25_std", "pacing": "linear"}
    second = zenml_client.get_pipeline_run(_run(_config(tmp_path, files, model_name, arms)).id)
    statuses = {name: str(step.status) for name, step in second.steps.items()}
    assert statuses["score_difficulty_bm25_std"] == "cached" and statuses["train_standard_training"] == "cached"
    assert statuses["train_model_loss_step"] == "cached" and statuses["train_bm25_std_linear"] == "completed"
    assert statuses["rerank_starting_point"] == "cached"
