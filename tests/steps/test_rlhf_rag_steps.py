"""RLHF and RAG steps through ``.entrypoint()``: tiny models, a toy corpus and a stub endpoint on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest

from finetune.models.causal import build_tiny_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import RagParams, RewardEvalParams, RewardModelParams, TinyGpt2Model, TrainingParams
from finetune.promotion import item_key
from steps.data.retrieve_passages import retrieve_passages
from steps.evaluate.evaluate_policy_reward import evaluate_policy_reward
from steps.evaluate.generate_intents import generate_intents
from steps.train.train_reward_model import train_reward_model

KEY = "sk-step-test-key"


def _queries(toy_ranking, qids):
    return pd.DataFrame({"qid": qids, "query": [toy_ranking.queries[q] for q in qids],
                         "intent": [f"find the {toy_ranking.queries[q]}" for q in qids],
                         "supporting": [[p for p, g in toy_ranking.qrels[q].items() if g >= 1] for q in qids]})


def test_retrieve_passages_renders_prompts_and_exact_recall(toy_ranking):
    """BM25 top-1 is each country's capital passage (grade 2) but never its grade-1 passage, so recall@1 of the
    {grade 2, grade 1} pairs is 1/2 for every query (q1 also judges "20" at grade 0, which does not support)."""
    corpus = pd.DataFrame({"pid": list(toy_ranking.corpus), "passage": list(toy_ranking.corpus.values())})
    rag = RagParams(retriever={"k": 1, "passage_chars": 20}, prompt_template="{passages} || {query}",
                    generator={"kind": "http", "base_url": "http://127.0.0.1:1", "model": "m"})
    train, test, metrics = retrieve_passages.entrypoint(corpus, _queries(toy_ranking, ["1", "2"]),
                                                        _queries(toy_ranking, ["3", "4"]), rag)
    assert metrics == {"train_recall@1": 0.5, "test_recall@1": 0.5}
    assert train["prompt"].tolist() == ["[1] paris is the capital || capital of france",
                                        "[1] berlin is the capita || capital of germany"]
    assert test["response"].tolist() == ["find the capital of italy", "find the capital of spain"]


class _Echo(BaseHTTPRequestHandler):
    auth: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).auth.append(self.headers.get("Authorization"))
        query = body["messages"][-1]["content"].rsplit(" || ", 1)[1]
        data = json.dumps({"choices": [{"message": {"content": f"find the {query}"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_generate_intents_over_http_with_the_key_from_the_environment(toy_ranking, monkeypatch):
    """The stub writes each reference intent exactly, so ROUGE-1/2/L are 1.0; recall passes through unchanged."""
    monkeypatch.setenv("STEP_TEST_KEY", KEY)
    server = HTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Echo.auth = []
    try:
        rag = RagParams(retriever={"k": 1}, prompt_template="{passages} || {query}", num_samples=2,
                        generator={"kind": "http", "base_url": f"http://127.0.0.1:{server.server_port}",
                                   "model": "m", "api_key_env": "STEP_TEST_KEY"})
        examples = pd.DataFrame({"prompt": ["p || capital of italy", "p || capital of spain"],
                                 "response": ["find the capital of italy", "find the capital of spain"]})
        metrics, samples, per_item = generate_intents.entrypoint(examples, {"test_recall@1": 0.5}, rag)
    finally:
        server.shutdown()
        server.server_close()
    assert _Echo.auth == [f"Bearer {KEY}"] * 2
    assert metrics["test_recall@1"] == 0.5
    assert metrics["test_rouge1"] == metrics["test_rouge2"] == metrics["test_rougeL"] == pytest.approx(1.0)
    assert len(samples) == 2 and KEY not in samples.to_json()
    assert per_item == {item_key("p || capital of italy"): 1.0, item_key("p || capital of spain"): 1.0}


def test_a_prefixed_baseline_names_its_generation_metrics_only(toy_ranking, monkeypatch):
    """``prefix="untuned_"`` (the generator before fine-tuning): generation metrics under that prefix, no recall."""
    monkeypatch.setenv("STEP_TEST_KEY", KEY)
    server = HTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rag = RagParams(retriever={"k": 1}, prompt_template="{passages} || {query}",
                        generator={"kind": "http", "base_url": f"http://127.0.0.1:{server.server_port}",
                                   "model": "m", "api_key_env": "STEP_TEST_KEY"})
        examples = pd.DataFrame({"prompt": ["p || capital of italy"], "response": ["find the capital of italy"]})
        metrics, _, per_item = generate_intents.entrypoint(examples, {"test_recall@1": 0.5}, rag, prefix="untuned_")
    finally:
        server.shutdown()
        server.server_close()
    assert set(metrics) == {"untuned_test_rouge1", "untuned_test_rouge2", "untuned_test_rougeL", "untuned_test_bleu"}
    assert metrics["untuned_test_rougeL"] == pytest.approx(1.0)
    assert per_item == {item_key("p || capital of italy"): 1.0}


def test_local_generator_needs_its_model(toy_ranking):
    rag = RagParams(generator={"kind": "local", "sft": {"model": {"kind": "tiny_gpt2"}}})
    examples = pd.DataFrame({"prompt": ["p"], "response": ["r"]})
    with pytest.raises(ValueError, match="needs its trained model_dir"):
        generate_intents.entrypoint(examples, {}, rag)


def test_reward_model_and_policy_reward_steps(tmp_path):
    pairs = pd.DataFrame({"prompt": [f"say {w}:" for w in ("up", "down") * 20],
                          "chosen": [f" {w}" for w in ("up", "down") * 20],
                          "rejected": [f" {w}" for w in ("down", "up") * 20]})
    texts = (pairs["prompt"] + pairs["chosen"]).tolist()
    path = build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=64), tmp_path / "base", texts)
    base = ModelDirectory(path=path, kind="causal_lm", base_model="tiny_gpt2", num_parameters=1)
    params = RewardModelParams(training=TrainingParams(epochs=1, per_device_batch_size=8, max_length=16,
                                                       logging_steps=1))
    reward_dir, metrics, log = train_reward_model.entrypoint(base, pairs, pairs.iloc[:10], params)
    assert reward_dir.kind == "reward_model" and (reward_dir.path / "config.json").is_file()
    assert set(metrics) == {"test_pairwise_accuracy", "test_pairwise_accuracy_low", "test_pairwise_accuracy_high",
                            "test_reward_margin", "test_longer_answer_accuracy", "test_p_value_vs_longer_answer"}
    assert len(log) == 5  # 40 pairs / 8
    assert reward_dir.base_model == "tiny_gpt2"  # no reward.model: the policy's own start
    evaluation = RewardEvalParams(max_new_tokens=3, num_samples=2)
    first, per_prompt = evaluate_policy_reward.entrypoint(base, reward_dir, pairs, evaluation, split="base_test")
    again, _ = evaluate_policy_reward.entrypoint(base, reward_dir, pairs, evaluation, split="base_test")
    assert list(first) == ["base_test_mean_reward"] and first == again  # seeded sampling: same completions
    # One mean reward per distinct prompt ("say up:", "say down:"), whose mean is the metric.
    assert set(per_prompt) == {item_key("say up:"), item_key("say down:")}
    assert sum(per_prompt.values()) / 2 == pytest.approx(first["base_test_mean_reward"])
