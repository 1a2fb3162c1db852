"""cross_encoder_training end to end on a throw-away ZenML store, with a tiny BERT on generated MS MARCO files.

Runs the pipeline exactly as ``zenml pipeline run ... -c <config>`` does (``with_options(config_path=...)``).
"""

import re
import uuid

import pytest
import yaml

from finetune.data.demo import write_demo_msmarco
from finetune.data.types import DataFormatError

pytestmark = pytest.mark.slow

CACHED_ON_RERUN = {"load_msmarco", "retrieve_first_stage", "mine_hard_negatives", "train_cross_encoder",
                   "rerank_candidates", "rerank_starting_point", "evaluate_reranker"}
ALWAYS_RUN = {"fingerprint_sources", "fingerprint_base_model", "promote_model"}


def _config(tmp_path, files, model_name):
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
            "evaluation": {"rerank_depth": 12, "metrics": ["ndcg@10", "mrr@10", "recall@12"],
                           "relevance_level": 2},
        },
    }
    path = tmp_path / "cross_encoder_training.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(config_path):
    from pipelines.ranking import cross_encoder_training

    return cross_encoder_training.with_options(config_path=str(config_path))()


def _statuses(client, run_id):
    run = client.get_pipeline_run(run_id)
    return {name: str(step.status) for name, step in run.steps.items()}


def test_train_rerun_cached_edit_reingests_and_bad_input_registers_nothing(tmp_path, zenml_client):
    from zenml.enums import ModelStages

    from cli.config_check import validate_config
    from cli.show import summary

    files = write_demo_msmarco(tmp_path / "data", num_queries=16, passages_per_query=12, seed=3)
    model_name = f"reranker_{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path, files, model_name)
    assert validate_config(config) == []

    first = _run(config)
    run = zenml_client.get_pipeline_run(first.id)
    assert str(run.status) == "completed"
    metrics = run.steps["evaluate_reranker"].outputs["metrics"][0].load()
    decision = run.steps["promote_model"].outputs["promotion_decision"][0].load()
    assert 0.0 <= metrics["test_ndcg@10"] <= 1.0 and 0.0 <= metrics["bm25_test_ndcg@10"] <= 1.0
    assert decision["promote"] == (metrics["test_ndcg@10"] > metrics["bm25_test_ndcg@10"])
    shown = summary("cross_encoder_training")  # what `make demo` prints
    assert re.search(rf"test_ndcg@10 +{metrics['bm25_test_ndcg@10']:.4f} +{metrics['test_ndcg@10']:.4f} ", shown)
    assert decision["reason"] in shown and "build_ranking_report" in shown
    version = zenml_client.get_model_version(model_name, 1)
    assert version.stage == (ModelStages.PRODUCTION if decision["promote"] else ModelStages.STAGING)
    assert version.run_metadata["test_ndcg@10"] == pytest.approx(metrics["test_ndcg@10"])
    report = run.steps["build_ranking_report"].outputs["report"][0].load()
    assert "data:image/png;base64," in report and "ndcg@10" in report
    run_file = run.steps["rerank_candidates"].outputs["reranked_run"][0]
    assert run_file.load().name == "cross_encoder"

    # An identical second run reuses every artifact; only steps that look outside their inputs execute.
    second = _statuses(zenml_client, _run(config).id)
    assert {s for s in CACHED_ON_RERUN if second[s] == "cached"} == CACHED_ON_RERUN
    assert {s: second[s] for s in ALWAYS_RUN} == {s: "completed" for s in ALWAYS_RUN}

    # Changed bytes in a source file re-run ingest and everything downstream.
    qrels = files["qrels"].read_text().splitlines()
    files["qrels"].write_text("\n".join(qrels[:-1]) + "\n")
    third = _statuses(zenml_client, _run(config).id)
    assert third["load_msmarco"] == "completed" and third["train_cross_encoder"] == "completed"

    # A malformed collection stops the run with one line naming file and line; no model version is left behind.
    lines = files["collection"].read_text().splitlines()
    lines[4] = "not-an-id\t" + lines[4].split("\t", 1)[1]
    files["collection"].write_text("\n".join(lines) + "\n")
    versions_before = {v.number for v in zenml_client.list_model_versions(model_name, size=100).items}
    with pytest.raises(DataFormatError, match=r":5: "):  # fail-fast: the step's own error
        _run(config)
    failed = zenml_client.list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    assert str(failed.status) == "failed"
    last_line = failed.steps["load_msmarco"].exception_info.traceback.strip().splitlines()[-1]
    assert last_line.startswith(f"finetune.data.types.DataFormatError: {files['collection']}:5: ")
    versions_after = {v.number for v in zenml_client.list_model_versions(model_name, size=100).items}
    assert versions_after == versions_before


def test_teacher_unlabeled_queries_fusion_and_starting_point_gate(tmp_path, zenml_client):
    """With a teacher (fused with a query-likelihood member) and unlabeled queries: the teacher scores the mined
    groups and the unlabeled queries' BM25 candidates (one cached ``teacher_scores``), the reranker learns them, the
    untrained starting model reranks the same candidates, the fused run is the candidate, and ``baseline: both``
    makes the gate beat both baselines."""
    files = write_demo_msmarco(tmp_path / "data", num_queries=16, passages_per_query=12, seed=3)
    queries = dict(line.split("\t", 1) for line in files["queries"].read_text().splitlines())
    first_qid, first_text = next(iter(queries.items()))
    unlabeled = tmp_path / "unlabeled.tsv"  # 5 new queries, plus a known id and a known text that must be dropped
    new = [f"{9000 + i}\twhere is {text.split()[-1]}" for i, text in enumerate(list(queries.values())[:5])]
    unlabeled.write_text("\n".join([*new, f"{first_qid}\tsomething else", f"8999\t{first_text}"]) + "\n")
    model_name = f"reranker_{uuid.uuid4().hex[:8]}"
    config = yaml.safe_load(_config(tmp_path, files, model_name).read_text())
    parameters = config["parameters"]
    parameters["data"]["unlabeled"] = {"queries": str(unlabeled), "depth": 4}
    parameters["mining"]["negatives_per_positive"] = 3  # groups of 4, like the unlabeled ones
    parameters["teacher"] = {"model": {"kind": "tiny_bert", "vocab_size": 300}, "architecture": "dual_encoder",
                             "max_length": 64,  # fused with a tiny causal LM's query likelihood
                             "ensemble": [{"model": {"kind": "tiny_llama"}, "weight": 0.4, "max_length": 32}]}
    parameters["cross_encoder"]["temperature"] = 0.1
    parameters["fusion"] = {"first_stage": 0.2, "starting_point": 0.3}
    parameters["promotion"] = {"baseline": "both"}
    path = tmp_path / "with_teacher.yaml"
    path.write_text(yaml.safe_dump(config))

    run = zenml_client.get_pipeline_run(_run(path).id)
    assert str(run.status) == "completed"
    candidates = run.steps["retrieve_unlabeled_candidates"].outputs["unlabeled_candidates"][0].load()
    assert set(candidates["qid"]) == {f"{9000 + i}" for i in range(5)}
    assert candidates.groupby("qid").size().eq(4).all() and set(candidates["role"]) == {"candidate"}
    scores = run.steps["score_teacher"].outputs["teacher_scores"][0].load()
    assert (scores["role"] == "candidate").sum() == 20 and scores["teacher_score"].notna().all()
    assert scores["group"].is_unique is False and scores.groupby("group").size().eq(4).all()
    assert scores["teacher_model_score"].between(-1.0, 1.0).all() and (scores["ensemble_0_score"] < 0).all()
    assert scores["teacher_score"].between(0.0, 1.0).all()  # 0.6 × min-max(cosine) + 0.4 × min-max(log-prob)
    assert "fingerprint_teacher_ensemble" in run.steps
    parents = zenml_client.get_model_version(model_name, 1).run_metadata["parents"]
    assert parents["teacher_ensemble_0"]["kind"] == "tiny_llama"
    assert "train_cross_encoder" not in run.steps and "distill_cross_encoder" in run.steps
    metrics = run.steps["evaluate_reranker"].outputs["metrics"][0].load()
    for key in ("test_ndcg@10", "bm25_test_ndcg@10", "zero_shot_test_ndcg@10", "cross_encoder_test_ndcg@10",
                "p_value_test_ndcg@10_vs_zero_shot", "significant_test_ndcg@10_vs_zero_shot"):
        assert key in metrics, key
    comparison = run.steps["evaluate_reranker"].outputs["comparison"][0].load()
    assert set(comparison["means"]) == {"bm25", "zero_shot", "cross_encoder", "fused"}
    decision = run.steps["promote_model"].outputs["promotion_decision"][0].load()
    strongest = max(metrics["bm25_test_ndcg@10"], metrics["zero_shot_test_ndcg@10"])
    assert decision["baseline"] == pytest.approx(strongest)
    assert decision["promote"] == (metrics["test_ndcg@10"] > strongest)
