"""Retrieval-augmented intent generation: demo intents, retrieval recall, prompts, the HTTP generator on a stub."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from finetune.data.msmarco import read_queries
from finetune.data.rag_demo import intent_of, write_demo_rag
from finetune.data.types import DataFormatError
from finetune.generation.rag import (
    build_prompt,
    chat_completion,
    generate_http,
    load_rag_data,
    rag_examples,
    read_intents,
    recall_at_k,
    retrieve,
)
from finetune.params import DemoRag, HttpGenerator, RagDataParams, RagRetrieverParams

SECRET = "sk-test-0123456789abcdef"


def test_demo_intents_follow_the_query():
    assert intent_of("what is the capital of veldoria") == "find the capital of veldoria"
    assert intent_of("in what year was saremstan founded") == "find the founding year of saremstan"
    assert intent_of("official language spoken in limaora") == "find the official language of limaora"
    with pytest.raises(ValueError, match="not a demo query"):
        intent_of("how tall is mount everest")


def test_demo_files_load_with_supporting_passages(tmp_path):
    paths = write_demo_rag(tmp_path, num_queries=12, passages_per_query=6)
    assert len(read_intents(paths["intents"])) == len(read_queries(paths["queries"])) == 12
    corpus, train, test = load_rag_data(RagDataParams(source=DemoRag(output_dir=tmp_path, num_queries=12),
                                                      test_fraction=0.25))
    assert (len(train), len(test), len(corpus)) == (9, 3, 72)
    assert set(train["qid"]).isdisjoint(test["qid"])
    for row in test.itertuples():
        place = row.intent.rsplit(" ", 1)[1]
        # Supporting passages (grade 3) state the fact about the queried place, so they name it.
        assert row.supporting and all(place in corpus[p].lower() for p in row.supporting)


def test_intents_file_errors_name_the_line(tmp_path):
    path = tmp_path / "intents.tsv"
    path.write_text("1\tfind a\n2 find b\n")
    with pytest.raises(DataFormatError, match="intents.tsv:2: expected 'qid<TAB>intent'"):
        read_intents(path)


def test_recall_at_k_exact():
    """q1 supports {a, b}: top-2 [a, x] finds 1 of 2 = 0.5; q2 supports {c}: top-2 [y, c] finds it = 1.0;
    q3 has no supporting passage and is skipped. Mean (0.5 + 1.0) / 2 = 0.75; at k=1: (0.5 + 0) / 2 = 0.25."""
    retrieved = {"q1": ["a", "x", "b"], "q2": ["y", "c"], "q3": ["z"]}
    supporting = {"q1": ["a", "b"], "q2": ["c"], "q3": []}
    assert recall_at_k(retrieved, supporting, 2) == pytest.approx(0.75)
    assert recall_at_k(retrieved, supporting, 1) == pytest.approx(0.25)
    assert recall_at_k(retrieved, supporting, 3) == pytest.approx(1.0)


def test_bm25_retrieval_on_a_small_corpus(toy_ranking):
    """Every query "capital of X" retrieves the passage naming X's capital first; recall@1 of those is 1.0."""
    retrieved = retrieve(toy_ranking.corpus, toy_ranking.queries, RagRetrieverParams(k=2))
    assert [retrieved[q][0] for q in ("1", "2", "3", "4")] == ["10", "12", "14", "16"]
    assert all(len(pids) == 2 for pids in retrieved.values())
    supporting = {"1": ["10"], "2": ["12"], "3": ["14"], "4": ["16"]}
    assert recall_at_k(retrieved, supporting, 1) == 1.0


def test_prompt_numbers_and_cuts_passages():
    prompt = build_prompt("P:\n{passages}\nQ: {query}", "capital of france", ["abcdef", "xyz"], passage_chars=4)
    assert prompt == "P:\n[1] abcd\n[2] xyz\nQ: capital of france"


def test_rag_examples_are_instruction_records(toy_ranking):
    import pandas as pd

    frame = pd.DataFrame({"qid": ["1"], "query": ["capital of france"], "intent": ["find the capital of france"],
                          "supporting": [["10"]]})
    examples = rag_examples(frame, {"1": ["10", "18"]}, toy_ranking.corpus, "{passages}|{query}", 100)
    assert examples.loc[0, "prompt"] == "[1] paris is the capital city of france\n[2] the cat sat on the mat|" \
                                        "capital of france"
    assert json.loads(examples.loc[0, "messages"])[1] == {"role": "assistant", "content": "find the capital of france"}


class _Stub(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint: records each request and answers "intent: <last user message>"."""

    requests: list = []
    fail_first: int = 0

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if type(self).fail_first:
            type(self).fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        reply = {"choices": [{"message": {"role": "assistant",
                                          "content": " intent: " + body["messages"][-1]["content"] + "\n"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server():
    _Stub.requests, _Stub.fail_first = [], 0
    server = HTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_http_generator_sends_the_key_as_bearer_and_never_logs_it(stub_server, caplog):
    generator = HttpGenerator(base_url=stub_server + "/", model="stub-model", system_prompt="be brief")
    with caplog.at_level(logging.DEBUG):
        replies = generate_http(["q one", "q two"], generator, SECRET, max_new_tokens=12)
    assert replies == ["intent: q one", "intent: q two"]
    assert [r["path"] for r in _Stub.requests] == ["/v1/chat/completions"] * 2
    assert all(r["auth"] == f"Bearer {SECRET}" for r in _Stub.requests)
    body = _Stub.requests[0]["body"]
    assert body == {"model": "stub-model", "max_tokens": 12, "temperature": 0,
                    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q one"}]}
    assert SECRET not in caplog.text and SECRET not in json.dumps(replies)


def test_http_generator_retries_server_errors_and_reports_without_the_key(stub_server, monkeypatch):
    monkeypatch.setattr("finetune.generation.rag.time.sleep", lambda s: None)
    _Stub.fail_first = 1
    messages = [{"role": "user", "content": "x"}]
    assert chat_completion(stub_server, "m", messages, SECRET, 5, max_retries=1) == "intent: x"
    _Stub.fail_first = 5
    with pytest.raises(RuntimeError, match=r"chat/completions: HTTP 503") as error:
        chat_completion(stub_server, "m", messages, SECRET, 5, max_retries=1)
    assert SECRET not in str(error.value)
    assert len(_Stub.requests) == 4  # 2 for the first call, 2 for the second (1 try + 1 retry each)


def test_http_generator_without_a_key_sends_no_authorization(stub_server):
    assert generate_http(["y"], HttpGenerator(base_url=stub_server, model="m"), None, 5) == ["intent: y"]
    assert _Stub.requests[0]["auth"] is None


def test_dual_encoder_retrieval_with_the_packaged_minilm(toy_ranking, tmp_path):
    """all-MiniLM-L6-v2 puts each "capital of X" passage first, above "the capital of a company is its money"."""
    from finetune.params import PackagedModel
    from finetune.ranking.distillation import save_encoder

    model_dir, _, _ = save_encoder(PackagedModel(), "dual_encoder", tmp_path / "retriever", [])
    params = RagRetrieverParams(kind="dual_encoder", model=PackagedModel(), k=3)
    retrieved = retrieve(toy_ranking.corpus, toy_ranking.queries, params, model_dir)
    assert [retrieved[q][0] for q in ("1", "2", "3", "4")] == ["10", "12", "14", "16"]
    assert all(len(pids) == 3 and len(set(pids)) == 3 for pids in retrieved.values())
    with pytest.raises(ValueError, match="needs its model directory"):
        retrieve(toy_ranking.corpus, toy_ranking.queries, params)


def test_dual_encoder_retriever_needs_a_model():
    with pytest.raises(ValueError, match="retriever.model: a dual_encoder retriever needs a model"):
        RagRetrieverParams(kind="dual_encoder")


def test_api_key_from_the_environment(monkeypatch):
    from finetune.generation.rag import api_key_from_env

    generator = HttpGenerator(base_url="http://127.0.0.1:1", model="m", api_key_env="RAG_TEST_KEY")
    monkeypatch.delenv("RAG_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="environment variable RAG_TEST_KEY is not set"):
        api_key_from_env(generator)
    monkeypatch.setenv("RAG_TEST_KEY", SECRET)
    assert api_key_from_env(generator) == SECRET
    assert api_key_from_env(HttpGenerator(base_url="http://127.0.0.1:1", model="m")) is None


@pytest.mark.parametrize("template", ["chat", "{prompt}\nAnswer:"])
def test_local_generation_renders_prompts_as_training_does(tmp_path, monkeypatch, template):
    """``chat``: the tokenizer's chat template with the prompt as the user turn and the generation prompt, exactly
    the prompt ``render_example`` trains on; a text template: ``template.format(prompt=...)``."""
    import finetune.generation.evaluation as evaluation
    from finetune.data.instructions import render_example
    from finetune.generation.rag import generate_local
    from finetune.models.causal import build_tiny_causal_lm, load_causal_lm
    from finetune.params import TinyGpt2Model

    model_dir = build_tiny_causal_lm(TinyGpt2Model(hidden_size=16, num_layers=1, vocab_size=300),
                                     tmp_path / "tiny", texts=["what is bm25", "a ranking function"])
    seen = []
    monkeypatch.setattr(evaluation, "generate_responses",
                        lambda model, tokenizer, prompts, *args, **kw: seen.extend(prompts) or [" x "] * len(prompts))
    assert generate_local(model_dir, ["what is bm25"], template, max_new_tokens=4) == ["x"]
    _, tokenizer = load_causal_lm(model_dir)
    turns = [{"role": "user", "content": "what is bm25"}, {"role": "assistant", "content": "a ranking function"}]
    expected = render_example(turns, template, tokenizer)[0]
    assert seen == [expected] and (template != "chat" or expected != "what is bm25\nAnswer:")


def test_a_local_generator_template_needs_the_prompt_unless_it_is_chat():
    from finetune.params import LocalGenerator

    sft = {"model": {"kind": "tiny_gpt2"}, "method": {"name": "full"}}
    assert LocalGenerator(sft=sft, template="chat").template == "chat"
    with pytest.raises(ValueError, match="generator.template"):
        LocalGenerator(sft=sft, template="Answer:")
