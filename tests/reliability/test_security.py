"""Security: a model's own Python code runs only when its spec says so, weights are safetensors both ways, secrets
(hub token, API keys) never reach logs, metadata, configs or the artifact store, and configured folders and model
names cannot point a write outside where it belongs.
"""

import json
import logging
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from finetune.models.causal import (
    build_tiny_causal_lm,
    load_causal_lm,
    load_pretrained_causal_lm,
    resolve_causal_model,
    save_causal_lm,
)
from finetune.models.sources import build_tiny_bert, resolve_model
from finetune.params import (
    CrossEncoderParams,
    DualEncoderParams,
    HubModel,
    LocalModel,
    PackagedModel,
    TinyBertModel,
    TinyGpt2Model,
    TrainingParams,
)

TEXTS = [f"the capital of place {i} is city {i}" for i in range(20)] + ["a river flows south", "cats sit on mats"]
TINY_GPT2 = TinyGpt2Model(hidden_size=16, num_layers=1, num_heads=2, vocab_size=300, max_position_embeddings=64)
TINY_BERT = TinyBertModel(hidden_size=16, num_layers=1, num_heads=2, vocab_size=150)
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".ckpt")

# --------------------------------------------------------------------------------------------- remote code

CONFIGURATION = """import os
from pathlib import Path

from transformers import GPT2Config

Path(os.environ["FINETUNE_REMOTE_CODE_MARKER"]).write_text("ran")


class MarkerConfig(GPT2Config):
    model_type = "marker_gpt2"
"""
MODELING = """from transformers import GPT2LMHeadModel

from .configuration_marker import MarkerConfig


class MarkerForCausalLM(GPT2LMHeadModel):
    config_class = MarkerConfig
"""


def _custom_code_model(folder: Path) -> Path:
    """A tiny GPT-2 whose config.json asks for the directory's own code, which leaves a marker file when it runs."""
    build_tiny_causal_lm(TINY_GPT2, folder, TEXTS)
    (folder / "configuration_marker.py").write_text(CONFIGURATION)
    (folder / "modeling_marker.py").write_text(MODELING)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="marker_gpt2", auto_map={"AutoConfig": "configuration_marker.MarkerConfig",
                                                       "AutoModelForCausalLM": "modeling_marker.MarkerForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_model_specs_trust_no_remote_code_by_default(tmp_path):
    assert HubModel(id="org/model").trust_remote_code is False
    assert LocalModel(path=tmp_path).trust_remote_code is False
    packaged = resolve_model(PackagedModel(), tmp_path)
    assert packaged.model_kwargs() == {"trust_remote_code": False, "use_safetensors": True}
    assert packaged.sentence_transformers_kwargs() == {"trust_remote_code": False, "revision": None,
                                                       "model_kwargs": {"use_safetensors": True}}
    hub = resolve_model(HubModel(id="org/model", revision="abc123"), tmp_path)
    assert hub.tokenizer_kwargs() == {"trust_remote_code": False, "revision": "abc123"}


def test_a_models_own_code_runs_only_when_its_spec_trusts_it(tmp_path, monkeypatch, caplog):
    marker = tmp_path / "remote_code_ran"
    monkeypatch.setenv("FINETUNE_REMOTE_CODE_MARKER", str(marker))
    folder = _custom_code_model(tmp_path / f"custom_{uuid.uuid4().hex[:8]}")

    with caplog.at_level(logging.WARNING, logger="finetune.models.sources"):
        default = resolve_causal_model(LocalModel(path=folder), tmp_path)
        with pytest.raises(ValueError, match="trust_remote_code=True"):
            load_pretrained_causal_lm(default)
    assert not marker.exists() and "trust_remote_code" not in caplog.text

    with caplog.at_level(logging.WARNING, logger="finetune.models.sources"):
        trusted = resolve_causal_model(LocalModel(path=folder, trust_remote_code=True), tmp_path)
        model, _ = load_pretrained_causal_lm(trusted)
    assert marker.read_text() == "ran" and type(model).__name__ == "MarkerForCausalLM"
    assert f"trust_remote_code is on for {folder}" in caplog.text


@pytest.mark.parametrize("architecture", ["cross_encoder", "dual_encoder"])
def test_sentence_transformers_loads_get_the_specs_flag_and_safetensors(tmp_path, monkeypatch, caplog, architecture):
    """The teacher load of the distillation pipelines passes the spec's flag (spied on the real classes)."""
    import sentence_transformers

    from finetune.ranking.distillation import save_encoder

    name = "CrossEncoder" if architecture == "cross_encoder" else "SentenceTransformer"
    real, seen = getattr(sentence_transformers, name), []

    class Spy(real):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, name, Spy)
    base = build_tiny_bert(TINY_BERT, tmp_path / "base", TEXTS)
    for trusted in (False, True):
        with caplog.at_level(logging.WARNING, logger="finetune.models.sources"):
            spec = LocalModel(path=base, trust_remote_code=trusted)
            save_encoder(spec, architecture, tmp_path / f"teacher_{trusted}", TEXTS)
        assert seen[-1]["trust_remote_code"] is trusted and seen[-1]["model_kwargs"] == {"use_safetensors": True}
        assert ("trust_remote_code is on" in caplog.text) is trusted


# ----------------------------------------------------------------------------------------------- safetensors


def _weight_files(model_dir: Path) -> tuple[list[str], list[str]]:
    files = [p for p in Path(model_dir).rglob("*") if p.is_file()]
    return ([str(p.relative_to(model_dir)) for p in files if p.suffix == ".safetensors"],
            [str(p.relative_to(model_dir)) for p in files if p.suffix in PICKLED_WEIGHTS])


def _pairs() -> pd.DataFrame:
    from finetune.ranking.cross_encoder import PAIR_COLUMNS

    rows = []
    for g in range(4):
        rows.append(dict(group=g, qid=str(g), query=f"capital of place {g}", pid=f"p{g}",
                         passage=f"the capital of place {g} is city {g}", grade=1, role="positive"))
        rows += [dict(group=g, qid=str(g), query=f"capital of place {g}", pid=f"n{g}_{i}",
                      passage=f"a river {i} flows south", grade=0, role="negative") for i in range(2)]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


ONE_STEP = TrainingParams(max_steps=1, per_device_batch_size=4, max_length=32, device="cpu", precision="fp32")


@pytest.mark.parametrize("kind", ["cross_encoder", "dual_encoder"])
def test_trained_ranking_models_are_safetensors_without_trainer_pickles(tmp_path, kind):
    """The trainer writes its pickled training_args.bin under ``trainer/``; the registered ``model/`` has none."""
    if kind == "cross_encoder":
        from finetune.ranking.cross_encoder import train_cross_encoder

        result = train_cross_encoder(_pairs(), CrossEncoderParams(model=TINY_BERT, training=ONE_STEP), tmp_path)
    else:
        from finetune.ranking.dual_encoder import train_dual_encoder

        result = train_dual_encoder(_pairs(), DualEncoderParams(model=TINY_BERT, training=ONE_STEP), tmp_path)
    safetensors, pickles = _weight_files(result.model_dir)
    assert "model.safetensors" in safetensors and pickles == []


@pytest.mark.parametrize("method", ["full", "lora", "prompt_tuning"])
def test_saved_causal_lms_and_adapters_are_safetensors(tmp_path, method):
    """Full and LoRA (merged) save a plain model; prompt tuning saves the adapter and its frozen base under base/."""
    from peft import LoraConfig, PromptTuningConfig, get_peft_model

    model, tokenizer = load_causal_lm(build_tiny_causal_lm(TINY_GPT2, tmp_path / "base", TEXTS))
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=2, target_modules=["c_attn"], task_type="CAUSAL_LM"))
    elif method == "prompt_tuning":
        model = get_peft_model(model, PromptTuningConfig(num_virtual_tokens=2, task_type="CAUSAL_LM"))
    out = save_causal_lm(model, tokenizer, tmp_path / "model")
    safetensors, pickles = _weight_files(out)
    expected = {"full": ["model.safetensors"], "lora": ["model.safetensors"],
                "prompt_tuning": ["adapter_model.safetensors", "base/model.safetensors"]}[method]
    assert sorted(safetensors) == expected and pickles == []
    reloaded, _ = load_causal_lm(out)
    assert reloaded(torch.tensor([[1, 2, 3]])).logits.shape[-1] == len(tokenizer)


def test_pickled_weights_are_refused(tmp_path):
    """A directory whose weights are only a pickled pytorch_model.bin does not load."""
    folder = build_tiny_causal_lm(TINY_GPT2, tmp_path / "pickled", TEXTS)
    model, _ = load_causal_lm(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(OSError, match="safetensors"):
        load_causal_lm(folder)
    with pytest.raises(OSError, match="safetensors"):
        load_pretrained_causal_lm(resolve_causal_model(LocalModel(path=folder), tmp_path))


# ------------------------------------------------------------------------------------------------- paths


def _problems(tmp_path, pipeline: str, dotted: str, value) -> list[str]:
    from cli.config_check import validate_config

    config = yaml.safe_load(Path(f"configs/demo/{pipeline}.yaml").read_text())
    node = config["parameters"]
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    path = tmp_path / f"{pipeline}.yaml"
    path.write_text(yaml.safe_dump(config))
    return validate_config(path)


WRITE_DIRS = [
    ("cross_encoder_training", "data.train.output_dir"),
    ("sft_training", "data.source.output_dir"),
    ("sft_training", "mc_data.source.output_dir"),
    ("causal_lm_training", "data.source.output_dir"),
    ("dpo_alignment", "data.source.output_dir"),
    ("rag_intent", "data.source.output_dir"),
]


@pytest.mark.parametrize("pipeline, dotted", WRITE_DIRS, ids=[f"{p}:{d}" for p, d in WRITE_DIRS])
@pytest.mark.parametrize("value", ["../outside", ".demo_data/../../outside"])
def test_demo_folders_cannot_climb_out(tmp_path, pipeline, dotted, value):
    problems = _problems(tmp_path, pipeline, dotted, value)
    key = dotted.replace(".output_dir", ".demo.output_dir")  # pydantic names the union member by its tag
    assert problems == [f"{tmp_path / pipeline}.yaml: parameters.{key}: Value error, '{value}': a folder we write "
                        "to may not contain '..'; give a path below the working directory or an absolute one"]


def test_absolute_and_nested_demo_folders_are_fine(tmp_path):
    assert _problems(tmp_path, "dpo_alignment", "data.source.output_dir", str(tmp_path / "a" / "b")) == []
    assert _problems(tmp_path, "dpo_alignment", "data.source.output_dir", ".demo_data/x..y/z") == []


@pytest.mark.parametrize("key, value", [
    ("id", "../../etc"), ("id", "/abs/model"), ("id", "org/../model"), ("id", "a/b/c"), ("revision", "../../refs"),
    ("revision", "/main"),
])
def test_hub_model_ids_and_revisions_cannot_become_paths(tmp_path, key, value):
    """The hub client turns ids and revisions into cache paths; a parent segment or a root would leave the cache."""
    model = {"kind": "hub", "id": "openai-community/gpt2", "revision": "main", key: value}
    problems = _problems(tmp_path, "dpo_alignment", "dpo.model", model)
    assert len(problems) == 1 and "\n" not in problems[0]
    assert f"parameters.dpo.model.hub.{key}: Value error, '{value}' is not a" in problems[0]


def test_real_hub_ids_and_revisions_pass():
    for model_id in ("gpt2", "openai-community/gpt2-medium", "sentence-transformers/all-MiniLM-L6-v2", "a_b/c.d"):
        assert HubModel(id=model_id, revision="refs/pr/12").id == model_id


# ----------------------------------------------------------------------------------------------------- secrets


class _Stub(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint answering every query with ``find <query>``."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        query = body["messages"][-1]["content"].rsplit("Query: ", 1)[1]
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": f"find {query}"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _texts_of(value) -> str:
    return value.to_json() if hasattr(value, "to_json") else json.dumps(value, default=str)


@pytest.mark.slow
def test_planted_secrets_reach_no_log_metadata_config_or_artifact_file(tmp_path, zenml_client, monkeypatch, caplog,
                                                                       capfd):
    """A hub token in the environment and an endpoint key in a ZenML secret, through a whole rag_intent run."""
    from cli.config_check import validate_config
    from pipelines.generation import rag_intent

    hub_token, api_key = f"hf_{uuid.uuid4().hex}", f"sk-{uuid.uuid4().hex}"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.setenv(name, hub_token)
    secret_name = f"endpoint_{uuid.uuid4().hex[:8]}"
    zenml_client.create_secret(secret_name, values={"api_key": api_key})
    model_name = f"secrets_{uuid.uuid4().hex[:8]}"
    config = tmp_path / "rag_intent.yaml"
    server = HTTPServer(("127.0.0.1", 0), _Stub)
    config.write_text(yaml.safe_dump({"model": {"name": model_name}, "parameters": {
        "data": {"source": {"kind": "demo", "output_dir": str(tmp_path / "rag"), "num_queries": 12}},
        "rag": {"retriever": {"kind": "bm25", "k": 2},
                "generator": {"kind": "http", "base_url": f"http://127.0.0.1:{server.server_port}/v1",
                              "model": "stub", "api_key_secret": secret_name}},
    }}))
    assert validate_config(config) == []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with caplog.at_level(logging.DEBUG):
            run = zenml_client.get_pipeline_run(rag_intent.with_options(config_path=str(config))().id)
    finally:
        server.shutdown()
        server.server_close()
    assert str(run.status) == "completed"
    secrets = {"hub token": hub_token, "api key": api_key}

    # Everything the run wrote into the artifact store (artifacts and step logs), byte for byte.
    store = Path(zenml_client.active_stack.artifact_store.path)
    files = [p for p in store.rglob("*") if p.is_file()]
    logs = [Path(log.uri) for step in run.steps.values() for log in step.log_collection or [] if log.uri]
    assert len(logs) >= len(run.steps) and all(log.is_relative_to(store) for log in logs)  # so scanned below
    assert len(files) > 20 and any(f.is_relative_to(log) or f == log for f in files for log in logs)
    for path in files:
        data = path.read_bytes()
        for what, value in secrets.items():
            assert value.encode() not in data, f"{what} in {path}"
    # Every artifact loaded (parquet pages are compressed, so the bytes alone could hide a value).
    artifacts = [a for step in run.steps.values() for versions in step.outputs.values() for a in versions]
    texts = [_texts_of(a.load()) for a in artifacts]
    # Metadata of the run, its steps and the model version; the run and step configurations.
    texts.append(json.dumps(run.run_metadata, default=str))
    texts += [json.dumps(step.run_metadata, default=str) for step in run.steps.values()]
    texts += [json.dumps(step.config.model_dump(mode="json"), default=str) for step in run.steps.values()]
    texts.append(json.dumps(run.config.model_dump(mode="json"), default=str))
    version = zenml_client.get_model_version(model_name, 1)
    texts.append(json.dumps(version.run_metadata, default=str))
    captured = capfd.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    assert any("find " in t for t in texts)  # the grep sees real content: the stub's answers are in there
    for what, value in secrets.items():
        assert not [t[:80] for t in texts if value in t], what
    assert os.environ["HF_TOKEN"] == hub_token  # planted for the whole run
