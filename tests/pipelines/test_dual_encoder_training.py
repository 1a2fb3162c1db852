"""dual_encoder_training end to end on a throw-away ZenML store, with a tiny BERT bi-encoder on generated files."""

import uuid

import pytest
import yaml

from finetune.data.demo import write_demo_msmarco

pytestmark = pytest.mark.slow

FAST = {"max_steps": 6, "per_device_batch_size": 8, "learning_rate": 1e-3, "max_length": 64, "logging_steps": 2,
        "device": "cpu", "precision": "fp32"}


def _config(tmp_path, files, model_name):
    source = {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}}
    config = {
        "model": {"name": model_name},
        "parameters": {
            "data": {"train": source, "eval_fraction": 0.25, "split_seed": 1},
            "retrieval": {"k": 12},
            "mining": {"negatives_per_positive": 2, "depth": 12, "max_positives_per_query": 1},
            "dual_encoder": {"model": {"kind": "tiny_bert", "vocab_size": 300}, "towers": "separate",
                             "pooling": "cls", "similarity": "dot", "training": FAST},
            "dense": {"k": 12, "chunk_size": 50},
            "evaluation": {"rerank_depth": 12, "metrics": ["ndcg@10", "recall@12"], "relevance_level": 2},
        },
    }
    path = tmp_path / "dual_encoder_training.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_dual_encoder_training_registers_dense_and_rerank_metrics(tmp_path, zenml_client):
    from cli.config_check import validate_config
    from pipelines.ranking import dual_encoder_training

    files = write_demo_msmarco(tmp_path / "data", num_queries=16, passages_per_query=12, seed=3)
    model_name = f"retriever_{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path, files, model_name)
    assert validate_config(config) == []

    run = zenml_client.get_pipeline_run(dual_encoder_training.with_options(config_path=str(config))().id)
    assert str(run.status) == "completed"
    metrics = run.steps["evaluate_dual_encoder"].outputs["metrics"][0].load()
    stats = run.steps["evaluate_dual_encoder"].outputs["rerank_stats"][0].load()
    comparison = run.steps["evaluate_dual_encoder"].outputs["comparison"][0].load()
    # The untrained starting model runs both evaluations too: zero_shot (the primary kind) and zero_shot_rerank.
    assert list(comparison["means"]) == ["bm25", "dense", "rerank", "zero_shot", "zero_shot_rerank"]
    assert {"test_ndcg@10", "bm25_test_ndcg@10", "rerank_test_ndcg@10", "p_value_rerank_test_ndcg@10",
            "zero_shot_test_ndcg@10", "zero_shot_rerank_test_ndcg@10",
            "p_value_test_ndcg@10_vs_zero_shot"} <= set(metrics)
    assert metrics["zero_shot_test_ndcg@10"] == pytest.approx(comparison["means"]["zero_shot"]["ndcg@10"])
    # The test queries are 4 of 16 and the corpus is every generated passage (16 × 12 = 192).
    assert stats["passages_encoded"] == 192.0
    model_dir = run.steps["train_dual_encoder"].outputs["model_dir"][0].load()
    assert model_dir.kind == "dual_encoder" and (model_dir.path / "router_config.json").is_file()
    decision = run.steps["promote_model"].outputs["promotion_decision"][0].load()
    assert decision["promote"] == (metrics["test_ndcg@10"] > metrics["bm25_test_ndcg@10"])
    version = zenml_client.get_model_version(model_name, 1)
    assert version.run_metadata["rerank_test_ndcg@10"] == pytest.approx(metrics["rerank_test_ndcg@10"])
    assert "data:image/png;base64," in run.steps["build_ranking_report"].outputs["report"][0].load()
