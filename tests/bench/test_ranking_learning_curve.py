"""bench.ranking_learning_curve: kept checkpoints of a tiny cross_encoder_training run, re-evaluated from ZenML."""

import json
import uuid

import pytest
import yaml

import bench.ranking_learning_curve as curve
from finetune.data.demo import write_demo_msmarco

pytestmark = pytest.mark.slow


def test_checkpoints_sorted_by_step_and_refuses_a_folder_without_any(tmp_path):
    for name in ("checkpoint-10", "checkpoint-2", "runs", "checkpoint-x"):
        (tmp_path / name).mkdir()
    assert [step for step, _ in curve.checkpoints(tmp_path)] == [2, 10]
    with pytest.raises(SystemExit, match="no checkpoint-<step> folders"):
        curve.checkpoints(tmp_path / "runs")


def test_last_checkpoint_reproduces_the_pipelines_reranker_and_fused_scores(tmp_path, zenml_client, monkeypatch,
                                                                            capsys):
    from pipelines.ranking import cross_encoder_training

    files = write_demo_msmarco(tmp_path / "data", num_queries=16, passages_per_query=12, seed=3)
    source = {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}}
    root = tmp_path / "ckpt"
    config = {
        "model": {"name": f"curve_{uuid.uuid4().hex[:8]}"},
        "parameters": {
            "data": {"train": source, "eval_fraction": 0.25, "split_seed": 1},
            "retrieval": {"k": 12},
            "mining": {"negatives_per_positive": 3, "depth": 12, "max_positives_per_query": 1},
            "cross_encoder": {
                "model": {"kind": "tiny_bert", "vocab_size": 300},
                "training": {"max_steps": 4, "per_device_batch_size": 8, "learning_rate": 1e-3, "max_length": 64,
                             "logging_steps": 2, "device": "cpu", "precision": "fp32",
                             "checkpoints": {"every_steps": 2, "save_total_limit": 2, "keep": True,
                                             "root": str(root)}},
            },
            "fusion": {"first_stage": 0.2, "starting_point": 0.3},
            "evaluation": {"rerank_depth": 12, "metrics": ["ndcg@10", "mrr@10"], "relevance_level": 2},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run = zenml_client.get_pipeline_run(cross_encoder_training.with_options(config_path=str(path))().id)
    metrics = run.steps["evaluate_reranker"].outputs["metrics"][0].load()

    folders = [p for p in root.rglob("checkpoint-2")]
    assert len(folders) == 1
    monkeypatch.setattr(curve, "RESULTS", tmp_path / "curve.json")
    curve.main([str(folders[0].parent)])

    rows = json.loads((tmp_path / "curve.json").read_text())["rows"]
    assert [(r["model"], r["step"]) for r in rows] == [
        ("bm25", 0), ("zero_shot", 0), ("cross_encoder", 2), ("fused", 2), ("cross_encoder", 4), ("fused", 4)]
    by = {(r["model"], r["step"]): r for r in rows}
    # the final checkpoint is the model the pipeline evaluated: the same scores, so the same metrics
    assert by[("fused", 4)]["ndcg@10"] == pytest.approx(metrics["test_ndcg@10"], abs=1e-9)
    assert by[("fused", 4)]["mrr@10"] == pytest.approx(metrics["test_mrr@10"], abs=1e-9)
    assert by[("cross_encoder", 4)]["ndcg@10"] == pytest.approx(metrics["cross_encoder_test_ndcg@10"], abs=1e-9)
    assert by[("bm25", 0)]["ndcg@10"] == pytest.approx(metrics["bm25_test_ndcg@10"], abs=1e-9)
    assert by[("zero_shot", 0)]["p_vs_zero_shot"] == 1.0
    assert "| fused | 4 |" in capsys.readouterr().out
