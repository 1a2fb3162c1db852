"""retraining end to end on a throw-away ZenML store, with a tiny BERT cross-encoder on generated MS MARCO files.

One model, four runs: the first trains and is promoted (no production yet), the second finds the same bytes and
stops after the data check without a new version, the third is forced and trains the same model again (the gate
keeps that equal model in staging after a paired test with p = 1), the fourth sees an edited qrels file and
trains on it.
"""

import uuid

import pytest
import yaml

from finetune.data.demo import write_demo_msmarco
from finetune.data.types import DataFormatError

pytestmark = pytest.mark.slow


def _config(tmp_path, files, model_name, force=False):
    source = {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}}
    config = {
        "model": {"name": model_name},
        "parameters": {
            "family": "cross_encoder_training",
            "force": force,
            "data": {"train": source, "eval_fraction": 0.25, "split_seed": 1},
            "retrieval": {"k": 12},
            "mining": {"negatives_per_positive": 3, "depth": 12, "max_positives_per_query": 1},
            "cross_encoder": {
                "model": {"kind": "tiny_bert", "vocab_size": 300},
                "training": {"max_steps": 8, "per_device_batch_size": 8, "learning_rate": 1e-3,
                             "max_length": 64, "logging_steps": 2, "device": "cpu", "precision": "fp32"},
            },
            "evaluation": {"rerank_depth": 12, "metrics": ["ndcg@10", "mrr@10"], "relevance_level": 2},
            "promotion": {"alpha": 0.05},
        },
    }
    path = tmp_path / f"retraining{'_forced' if force else ''}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(client, config_path):
    from pipelines.retraining import retraining

    return client.get_pipeline_run(retraining.with_options(config_path=str(config_path))().id)


def _output(run, step, name):
    return run.steps[step].outputs[name][0].load()


def test_retraining_stops_on_unchanged_bytes_and_trains_on_changed_ones(tmp_path, zenml_client):
    from zenml.enums import ModelStages

    from cli.config_check import validate_config

    files = write_demo_msmarco(tmp_path / "data", num_queries=16, passages_per_query=12, seed=3)
    model_name = f"retrain_{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path, files, model_name)
    assert validate_config(config) == []

    def versions():
        return {v.number: v for v in zenml_client.list_model_versions(model_name, size=100).items}

    first = _run(zenml_client, config)
    assert str(first.status) == "completed"
    check = _output(first, "check_new_data", "data_check")
    assert check["retrain"] and check["reason"] == "no production version yet: training"
    decision = _output(first, "promote_model", "promotion_decision")
    assert decision["promote"], decision["reason"]  # beats BM25, and nothing is in production yet
    production = zenml_client.get_model_version(model_name, ModelStages.PRODUCTION)
    assert production.number == 1
    recorded = production.run_metadata["data_fingerprints"]
    assert recorded == _output(first, "fingerprint_sources", "source_fingerprints")
    assert production.run_metadata["configuration"]["cross_encoder"]["training"]["max_steps"] == 8
    assert production.run_metadata["parents"]["base_model"]["kind"] == "tiny_bert"
    per_item = _output(first, "promote_model", "per_item_scores")
    assert per_item["metric"] == "test_ndcg@10" and len(per_item["values"]) == 4  # 16 queries × 0.25 held out

    # Same bytes: the run stops after the check, trains nothing and leaves no new version behind.
    second = _run(zenml_client, config)
    assert str(second.status) == "completed" and set(second.steps) == {"fingerprint_sources", "check_new_data"}
    check = _output(second, "check_new_data", "data_check")
    assert not check["retrain"] and check["reason"].startswith("no new data since production version 1")
    assert set(versions()) == {1}
    last_check = zenml_client.get_model_version(model_name, 1).run_metadata["last_data_check"]
    assert last_check["run"] == second.name and not last_check["retrain"]

    # Forced: the same data trains the same model (cached steps); equal per-query values stay in staging.
    forced = _run(zenml_client, _config(tmp_path, files, model_name, force=True))
    decision = _output(forced, "promote_model", "promotion_decision")
    assert not decision["promote"] and decision["n_items"] == 4 and decision["p_value"] == 1.0
    assert decision["production_version"] == "1" and "not better" in decision["reason"]
    assert versions()[2].stage == ModelStages.STAGING
    report = _output(forced, "build_ranking_report", "report")
    assert decision["reason"] in report

    # Changed bytes: one qrels line fewer → retrain on the new data; the new version records its fingerprints.
    qrels = files["qrels"].read_text().splitlines()
    files["qrels"].write_text("\n".join(qrels[:-1]) + "\n")
    fourth = _run(zenml_client, config)
    check = _output(fourth, "check_new_data", "data_check")
    assert check["retrain"] and check["changed"] == ["train/qrels"] and not check["added"]
    assert fourth.steps["train_cross_encoder"].status == "completed"
    new_fingerprints = _output(fourth, "fingerprint_sources", "source_fingerprints")
    assert new_fingerprints["train/qrels"] != recorded["train/qrels"]
    assert versions()[3].run_metadata["data_fingerprints"] == new_fingerprints

    # A malformed file fails the run in load_msmarco; the dynamic pipeline's failure hook deletes its version.
    lines = files["collection"].read_text().splitlines()
    lines[4] = "not-an-id\t" + lines[4].split("\t", 1)[1]
    files["collection"].write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"collection.tsv:5: pid 'not-an-id'"):  # raised as is: dynamic run
        _run(zenml_client, config)
    assert set(versions()) == {1, 2, 3}
