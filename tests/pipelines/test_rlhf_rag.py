"""rlhf_training and rag_intent end to end on a throw-away ZenML store, with tiny models on generated data.

The HTTP generator runs against a stub OpenAI-compatible server on 127.0.0.1 that the test starts; its key lives in
a ZenML secret, and the test checks it was sent as a Bearer header and is in no log line and no artifact.
"""

import html
import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from finetune.generation import rlhf

pytestmark = pytest.mark.slow

TINY = {"kind": "tiny_gpt2", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "vocab_size": 400,
        "max_position_embeddings": 128}


def _run(pipeline_name, tmp_path, config):
    import pipelines.generation as generation
    from cli.config_check import validate_config

    path = tmp_path / f"{pipeline_name}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert validate_config(path) == []
    return getattr(generation, pipeline_name).with_options(config_path=str(path))()


def _output(run, step, name):
    return run.steps[step].outputs[name][0].load()


TINY_BERT = {"kind": "tiny_bert", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
             "vocab_size": 300, "max_position_embeddings": 64}


@pytest.mark.parametrize("reward_start", [None, TINY_BERT], ids=["policy_weights", "encoder"])
def test_rlhf_training_reward_model_and_policy(tmp_path, zenml_client, reward_start):
    model_name = f"rlhf_{uuid.uuid4().hex[:8]}"
    training = {"per_device_batch_size": 16, "warmup_ratio": 0.0, "max_length": 48, "logging_steps": 5,
                "device": "cpu", "precision": "fp32"}
    run = _run("rlhf_training", tmp_path, {
        "model": {"name": model_name},
        "parameters": {
            "data": {"source": {"kind": "demo", "output_dir": str(tmp_path / "pairs"), "num_pairs": 200}},
            "rlhf": {"model": TINY,
                     "reward": {"model": reward_start,
                                "training": {**training, "epochs": 2, "learning_rate": 1e-3}},
                     "rl": {"num_generations": 4, "max_completion_length": 6, "beta": 0.0,
                            "training": {**training, "max_steps": 10, "learning_rate": 1e-3}}},
            "evaluation": {"max_new_tokens": 6, "num_samples": 2, "max_prompts": 20},
        },
    })
    run = zenml_client.get_pipeline_run(run.id)
    assert str(run.status) == "completed"
    reward_metrics = _output(run, "train_reward_model", "reward_model_metrics")
    assert 0.0 <= reward_metrics["test_pairwise_accuracy"] <= 1.0
    reward_dir = _output(run, "train_reward_model", "reward_model_dir")
    policy_dir = _output(run, "prepare_causal_lm", "base_model_dir")
    if reward_start is None:  # a score head on the policy's own weights and tokenizer
        assert reward_dir.base_model == policy_dir.base_model
    else:  # an encoder of its own, scoring the policy's sampled answers before and after RL
        assert reward_dir.base_model.startswith("tiny_bert") and "fingerprint_reward_base" in run.steps
        assert rlhf.load_reward_model(reward_dir.path)[0].config.model_type == "bert"
    assert len(_output(run, "load_preferences", "test_pairs")) == 40  # 200 × 0.2
    before = _output(run, "evaluate_base_reward", "reward_metrics")["base_test_mean_reward"]
    after = _output(run, "evaluate_policy_reward", "reward_metrics")["test_mean_reward"]
    log = _output(run, "train_rl_policy", "training_log")
    assert [e["step"] for e in log if "reward" in e] == [5, 10]
    # The policy changed: the same sampling seed gives another mean reward after RL.
    assert after != before
    version = zenml_client.get_model_version(model_name, 1)
    assert version.run_metadata["test_mean_reward"] == pytest.approx(after)
    assert version.run_metadata["base_test_mean_reward"] == pytest.approx(before)
    assert version.run_metadata["test_pairwise_accuracy"] == pytest.approx(reward_metrics["test_pairwise_accuracy"])
    report = _output(run, "build_rlhf_report", "report")
    assert report.count("data:image/png;base64,") == 2 and f"{after:.4f}" in report
    assert "reward model started from" in report and html.escape(reward_dir.base_model) in report


def test_rag_intent_local_generator_with_a_dual_encoder(tmp_path, zenml_client):
    model_name = f"rag_{uuid.uuid4().hex[:8]}"
    run = _run("rag_intent", tmp_path, {
        "model": {"name": model_name},
        "parameters": {
            "data": {"source": {"kind": "demo", "output_dir": str(tmp_path / "rag"), "num_queries": 40,
                                "passages_per_query": 4}},
            "rag": {"retriever": {"kind": "dual_encoder", "model": {"kind": "package"}, "k": 2, "passage_chars": 60},
                    "max_new_tokens": 8, "device": "cpu",
                    "generator": {"kind": "local", "sft": {
                        "model": TINY, "method": {"name": "full"},
                        "training": {"max_steps": 20, "per_device_batch_size": 8, "learning_rate": 5e-3,
                                     "warmup_ratio": 0.0, "max_length": 128, "logging_steps": 5,
                                     "device": "cpu", "precision": "fp32"}}}},
        },
    })
    run = zenml_client.get_pipeline_run(run.id)
    assert str(run.status) == "completed"
    metrics = _output(run, "generate_intents", "metrics")
    assert set(metrics) == {"train_recall@2", "test_recall@2", "test_rouge1", "test_rouge2", "test_rougeL",
                            "test_bleu"}
    test_queries = _output(run, "load_rag_queries", "test_queries")
    test_examples = _output(run, "retrieve_passages", "test_examples")
    assert len(test_queries) == len(test_examples) == 10  # 40 × 0.25
    assert test_examples["response"].tolist() == test_queries["intent"].tolist()
    assert all(e.startswith("Passages:\n[1] ") and "\n[2] " in e and "\n[3] " not in e for e in test_examples["prompt"])
    assert _output(run, "prepare_retriever", "retriever_model_dir").kind == "dual_encoder"
    samples = _output(run, "generate_intents", "sample_generations")
    assert len(samples) == 10 and samples["rougeL"].is_monotonic_increasing
    report = _output(run, "build_rag_report", "report")
    assert f"{metrics['test_rougeL']:.4f}" in report and "test_recall@2" in report
    # the baseline: the same generator before fine-tuning, on the same prompts, tested per query by the gate
    untuned = _output(run, "generate_intents_untuned", "metrics")
    assert set(untuned) == {"untuned_test_rouge1", "untuned_test_rouge2", "untuned_test_rougeL", "untuned_test_bleu"}
    assert f"{untuned['untuned_test_rougeL']:.4f}" in report
    gate = zenml_client.get_model_version(model_name, 1).run_metadata
    assert gate["untuned_test_rougeL"] == pytest.approx(untuned["untuned_test_rougeL"])
    assert 0.0 <= gate["p_value_test_rougeL"] <= 1.0


class _Stub(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers every query with the intent it can read off the prompt."""

    auth: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).auth.append(self.headers.get("Authorization"))
        query = body["messages"][-1]["content"].rsplit("Query: ", 1)[1]
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": f"find {query}"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_rag_intent_http_generator_keeps_the_key_secret(tmp_path, zenml_client, caplog, capfd):
    key = f"sk-{uuid.uuid4().hex}"
    secret_name = f"rag_key_{uuid.uuid4().hex[:8]}"
    zenml_client.create_secret(secret_name, values={"api_key": key})
    _Stub.auth = []
    server = HTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with caplog.at_level(logging.DEBUG):
            run = _run("rag_intent", tmp_path, {
                "model": {"name": f"rag_http_{uuid.uuid4().hex[:8]}"},
                "parameters": {
                    "data": {"source": {"kind": "demo", "output_dir": str(tmp_path / "rag"), "num_queries": 16}},
                    "rag": {"retriever": {"kind": "bm25", "k": 3},
                            "generator": {"kind": "http", "base_url": f"http://127.0.0.1:{server.server_port}/v1",
                                          "model": "stub", "api_key_secret": secret_name}},
                },
            })
    finally:
        server.shutdown()
        server.server_close()
    run = zenml_client.get_pipeline_run(run.id)
    assert str(run.status) == "completed"
    assert _Stub.auth == [f"Bearer {key}"] * 4  # 16 queries × 0.25 = 4 test queries, one request each
    samples = _output(run, "generate_intents", "sample_generations")
    queries = dict(zip(*(_output(run, "load_rag_queries", "test_queries")[c] for c in ("intent", "query")),
                       strict=True))
    assert sorted(samples["generated"]) == sorted(f"find {q}" for q in queries.values())
    outputs = [a for step in run.steps.values() for artifacts in step.outputs.values() for a in artifacts]
    for artifact in outputs:
        value = artifact.load()
        text = value.to_json() if hasattr(value, "to_json") else json.dumps(value, default=str)
        assert key not in text, artifact.name
    captured = capfd.readouterr()
    assert key not in caplog.text and key not in captured.out and key not in captured.err
    assert key not in json.dumps(run.config.model_dump(mode="json"), default=str)
