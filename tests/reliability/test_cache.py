"""Cache correctness: one changed byte in any input file re-runs its ingest step and everything downstream;
touching a file's modification time without changing a byte re-runs nothing but the fingerprint steps.

Three levels: the fingerprint functions on every file role of every source (fast, no ZenML); one pipeline made of
the real fingerprint, load and first downstream steps of every data family (MS MARCO files with a run, instruction
JSONL, a text corpus, preference pairs, ARC questions, RAG sources), where a byte changed in one family must re-run
exactly that family's branch; and ``cross_encoder_training`` end to end.

Model inputs likewise: every step that loads a model from a spec takes its role's ``fingerprint_models`` artifact
(checked on every pipeline, fast), and weights replaced in a ``kind: local`` folder re-train (end to end).
"""

import inspect
import os
import uuid
from pathlib import Path

import pytest
import yaml
from zenml import pipeline

from finetune.data.arc import fingerprint_multiple_choice, write_demo_arc
from finetune.data.demo import write_demo_msmarco
from finetune.data.demo_text import write_demo_corpus, write_demo_instructions
from finetune.data.instructions import fingerprint_instructions
from finetune.data.preferences import fingerprint_preferences, write_demo_preferences
from finetune.data.rag_demo import write_demo_rag
from finetune.data.ranking import fingerprint_sources
from finetune.data.text import fingerprint_text
from finetune.generation.rag import fingerprint_rag
from finetune.params import (
    GenerationEvalParams,
    InstructionDataParams,
    MultipleChoiceDataParams,
    PreferenceDataParams,
    RagDataParams,
    RagParams,
    RankingDataParams,
    RetrievalParams,
    TextDataParams,
    TinyGpt2Model,
    TriplesFile,
)
from steps.data.fingerprint_instructions import fingerprint_instructions as fingerprint_instructions_step
from steps.data.fingerprint_multiple_choice import fingerprint_multiple_choice as fingerprint_multiple_choice_step
from steps.data.fingerprint_preferences import fingerprint_preferences as fingerprint_preferences_step
from steps.data.fingerprint_rag_sources import fingerprint_rag_sources
from steps.data.fingerprint_sources import fingerprint_sources as fingerprint_sources_step
from steps.data.fingerprint_text_corpus import fingerprint_text_corpus
from steps.data.load_instructions import load_instructions
from steps.data.load_msmarco import load_msmarco
from steps.data.load_multiple_choice import load_multiple_choice
from steps.data.load_preferences import load_preferences
from steps.data.load_rag_queries import load_rag_queries
from steps.data.load_text_corpus import load_text_corpus
from steps.data.retrieve_first_stage import retrieve_first_stage
from steps.data.retrieve_passages import retrieve_passages
from steps.evaluate.evaluate_multiple_choice import evaluate_multiple_choice
from steps.train.prepare_causal_lm import prepare_causal_lm

# Where one byte is flipped in each kind of file: the first lowercase letter after the marker, inside a text
# value, so the file stays valid and parses to different content.
MARKERS = {".tsv": "\t", ".txt": " = ", ".jsonl": '": "', ".trec": " Q0 "}


def flip_one_byte(path) -> None:
    """Change one letter of ``path`` (the first lowercase one after its marker) to the next letter; same length.

    qrels have no letters: the grade of the last judgment graded 1 or 2 goes 1 ↔ 2 instead.
    """
    before = path.read_bytes()
    data = bytearray(before)
    if path.name.startswith("qrels"):
        index = max(i for i in range(len(data) - 1) if data[i:i + 2] in (b"1\n", b"2\n") and data[i - 1] == 32)
        data[index] = ord("2") if data[index] == ord("1") else ord("1")
    else:
        marker = MARKERS[path.suffix]
        start = data.index(marker.encode()) + len(marker)
        index = next(i for i in range(start, len(data)) if 97 <= data[i] <= 121)  # a..y
        data[index] += 1
    path.write_bytes(bytes(data))
    assert len(before) == len(data) and sum(a != b for a, b in zip(before, data, strict=True)) == 1


def touch(path) -> None:
    """Move the modification time an hour ahead without changing a byte."""
    stat = path.stat()
    os.utime(path, (stat.st_atime + 3600, stat.st_mtime + 3600))


def _write_run(qrels, path):
    rows = [line.split() for line in qrels.read_text().splitlines()]
    path.write_text("".join(f"{q} Q0 {p} {rank} {1.0 / rank} judged\n" for rank, (q, _, p, _) in enumerate(rows, 1)))
    return path


@pytest.fixture
def sources(tmp_path):
    """Files of every data family, written by the demo generators into ``tmp_path`` and read back as plain files."""
    msmarco = write_demo_msmarco(tmp_path / "msmarco", num_queries=8, passages_per_query=6, seed=1)
    train_arc, test_arc = write_demo_arc(tmp_path / "arc", num_questions=8)
    rag = write_demo_rag(tmp_path / "rag", num_queries=12, passages_per_query=3)
    corpus = write_demo_corpus(tmp_path / "text", num_documents=12)
    second = tmp_path / "text" / "more.txt"
    second.write_text(" = Extra = \n\n extra notes about the demo world . \n")
    return {
        "collection": msmarco["collection"], "queries": msmarco["queries"], "qrels": msmarco["qrels"],
        "run": _write_run(msmarco["qrels"], tmp_path / "msmarco" / "run.trec"), "triples": msmarco["triples"],
        "instructions": write_demo_instructions(tmp_path / "instructions", num_examples=40),
        "text": corpus, "text_more": second,
        "preferences": write_demo_preferences(tmp_path / "preferences", num_pairs=40),
        "arc_train": train_arc, "arc_test": test_arc,
        **{f"rag_{k}": v for k, v in rag.items() if k != "triples"},
    }


def _params(files):
    """Pipeline parameters reading every file as a plain source (tags written out: ZenML drops unset fields)."""
    f = {k: str(v) for k, v in files.items()}
    tiny = {"kind": "tiny_gpt2", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "vocab_size": 300,
            "max_position_embeddings": 64}
    return {
        "ranking": RankingDataParams.model_validate({"eval_fraction": 0.25, "train": {
            "kind": "msmarco_files", **{k: f[k] for k in ("collection", "queries", "qrels", "run")}}}),
        "instructions": InstructionDataParams.model_validate({"source": {"kind": "file", "path": f["instructions"]}}),
        "text": TextDataParams.model_validate({"source": {"kind": "files", "paths": [f["text"], f["text_more"]],
                                                          "documents": "wikitext"}}),
        "preferences": PreferenceDataParams.model_validate({"source": {"kind": "file", "path": f["preferences"]}}),
        "mc": MultipleChoiceDataParams.model_validate({"source": {"kind": "arc_files", "train": f["arc_train"],
                                                                  "test": f["arc_test"]}}),
        "rag_data": RagDataParams.model_validate({"source": {
            "kind": "files", **{k: f[f"rag_{k}"] for k in ("collection", "queries", "qrels", "intents")}}}),
        "rag": RagParams.model_validate({"retriever": {"kind": "bm25", "k": 2}, "generator": {
            "kind": "http", "base_url": "http://127.0.0.1:9/v1", "model": "never-called"}}),
        "model": TinyGpt2Model.model_validate(tiny),
        "retrieval": RetrievalParams(k=6),
        "evaluation": GenerationEvalParams(batch_size=8, device="cpu"),
    }


# --------------------------------------------------------------------------------- fingerprints, every file role


def _fingerprints(files):
    p = _params(files)
    triples = RankingDataParams(train=TriplesFile(path=files["triples"]), eval=p["ranking"].train)
    return {
        "ranking": fingerprint_sources(p["ranking"]), "triples": fingerprint_sources(triples),
        "instructions": fingerprint_instructions(p["instructions"]), "text": fingerprint_text(p["text"]),
        "preferences": fingerprint_preferences(p["preferences"]), "mc": fingerprint_multiple_choice(p["mc"]),
        "rag": fingerprint_rag(p["rag_data"]),
    }


# file -> (fingerprint family, key of its digest); the key is a role for MS MARCO, the path for the others
def _roles(files):
    return {
        "collection": ("ranking", "train/collection"), "queries": ("ranking", "train/queries"),
        "qrels": ("ranking", "train/qrels"), "run": ("ranking", "train/run"), "triples": ("triples", "train/triples"),
        "instructions": ("instructions", str(files["instructions"])), "text": ("text", str(files["text"])),
        "text_more": ("text", str(files["text_more"])), "preferences": ("preferences", str(files["preferences"])),
        "arc_train": ("mc", str(files["arc_train"])), "arc_test": ("mc", str(files["arc_test"])),
        **{f"rag_{k}": ("rag", str(files[f"rag_{k}"])) for k in ("collection", "queries", "qrels", "intents")},
    }


def test_fingerprints_follow_bytes_not_modification_times(sources):
    """Every file of every source: a touch leaves all digests equal; one flipped byte changes exactly its digest."""
    roles = _roles(sources)
    assert set(roles) == set(sources)
    before = _fingerprints(sources)
    for path in sources.values():
        touch(path)
    assert _fingerprints(sources) == before
    for name, path in sources.items():
        family, key = roles[name]
        flip_one_byte(path)
        after = _fingerprints(sources)
        changed = {(f, k) for f in after for k in after[f] if after[f][k] != before[f][k]}
        expected = {(family, key)} | ({("triples", "eval/" + key.split("/")[1])} if family == "ranking" else set())
        assert changed == expected, name
        before = after


# ------------------------------------------------------------- one branch per data family, on the ZenML store


@pipeline(enable_cache=True)
def ingest_every_family(ranking, instructions, text, preferences, mc, rag_data, rag, model, retrieval, evaluation):
    """The real fingerprint → load → first downstream steps of every family, side by side."""
    train_set, eval_set = load_msmarco(ranking, fingerprint_sources_step(ranking))
    retrieve_first_stage(train_set, eval_set, retrieval)
    train, _, _ = load_instructions(instructions, fingerprint_instructions_step(instructions))
    instruction_model = prepare_causal_lm(model, train, id="prepare_instruction_model")
    _, mc_test = load_multiple_choice(mc, fingerprint_multiple_choice_step(mc))
    evaluate_multiple_choice(instruction_model, mc_test, evaluation)
    documents, _, _ = load_text_corpus(text, fingerprint_text_corpus(text))
    prepare_causal_lm(model, documents, id="prepare_text_model")
    _, _, preference_texts = load_preferences(preferences, fingerprint_preferences_step(preferences))
    prepare_causal_lm(model, preference_texts, id="prepare_preference_model")
    corpus, train_queries, test_queries = load_rag_queries(rag_data, fingerprint_rag_sources(rag_data))
    retrieve_passages(corpus, train_queries, test_queries, rag)


FINGERPRINTS = {"fingerprint_sources", "fingerprint_instructions", "fingerprint_multiple_choice",
                "fingerprint_text_corpus", "fingerprint_preferences", "fingerprint_rag_sources"}
# One file per family (every file role is covered by the fingerprint test above); each one is a pipeline run.
BRANCHES = {
    "collection": {"load_msmarco", "retrieve_first_stage"},
    "instructions": {"load_instructions", "prepare_instruction_model", "evaluate_multiple_choice"},
    "arc_test": {"load_multiple_choice", "evaluate_multiple_choice"},
    "text_more": {"load_text_corpus", "prepare_text_model"},
    "preferences": {"load_preferences", "prepare_preference_model"},
    "rag_intents": {"load_rag_queries", "retrieve_passages"},
}


def _statuses(client, run) -> dict[str, str]:
    return {name: str(step.status) for name, step in client.get_pipeline_run(run.id).steps.items()}


@pytest.mark.slow
def test_each_family_reingests_on_a_changed_byte_and_nothing_on_a_touch(sources, zenml_client):
    params = _params(sources)
    first = _statuses(zenml_client, ingest_every_family(**params))
    cached_steps = set(first) - FINGERPRINTS
    assert set().union(*BRANCHES.values()) <= cached_steps and set(first.values()) <= {"completed", "cached"}

    for path in sources.values():
        touch(path)
    touched = _statuses(zenml_client, ingest_every_family(**params))
    assert {s: touched[s] for s in FINGERPRINTS} == dict.fromkeys(FINGERPRINTS, "completed")
    assert {s: touched[s] for s in cached_steps} == dict.fromkeys(cached_steps, "cached")

    for name, branch in BRANCHES.items():
        flip_one_byte(sources[name])
        statuses = _statuses(zenml_client, ingest_every_family(**params))
        assert {s for s in cached_steps if statuses[s] == "completed"} == branch, name
        assert {s for s in cached_steps - branch if statuses[s] != "cached"} == set(), name


# -------------------------------------------------------------------------------- cross_encoder_training end to end

CROSS_ENCODER_STEPS = {"load_msmarco", "retrieve_first_stage", "mine_hard_negatives", "train_cross_encoder",
                       "rerank_candidates", "rerank_starting_point", "evaluate_reranker"}
NEVER_CACHED = {"fingerprint_sources", "fingerprint_base_model", "promote_model"}
AFTER_THE_GATE = {"build_ranking_report"}  # reads the gate's decision, which may change once a version exists


def _cross_encoder_config(tmp_path: Path, files: dict, model: dict, model_name: str) -> Path:
    """A cross_encoder_training run config on demo MS MARCO files: 2 updates of a tiny model, BM25 depth 8."""
    source = {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}}
    config = tmp_path / "cross_encoder_training.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": model_name},
        "parameters": {
            "data": {"train": source, "eval_fraction": 0.25},
            "retrieval": {"k": 8},
            "mining": {"negatives_per_positive": 2, "depth": 8, "max_positives_per_query": 1},
            "cross_encoder": {"model": model,
                              "training": {"max_steps": 2, "per_device_batch_size": 4, "max_length": 48,
                                           "device": "cpu", "precision": "fp32"}},
            "evaluation": {"rerank_depth": 8, "metrics": ["ndcg@10", "mrr@10"]},
        },
    }))
    return config


@pytest.mark.slow
def test_cross_encoder_training_touch_is_cached_and_one_byte_reruns_everything(tmp_path, zenml_client):
    from pipelines.ranking import cross_encoder_training

    files = write_demo_msmarco(tmp_path / "data", num_queries=12, passages_per_query=8, seed=5)
    config = _cross_encoder_config(tmp_path, files, {"kind": "tiny_bert", "vocab_size": 200, "hidden_size": 16},
                                   f"cache_{uuid.uuid4().hex[:8]}")

    def run() -> dict[str, str]:
        return _statuses(zenml_client, cross_encoder_training.with_options(config_path=str(config))())

    first = run()
    every_step = CROSS_ENCODER_STEPS | NEVER_CACHED | AFTER_THE_GATE
    assert set(first) == every_step and set(first.values()) == {"completed"}
    for path in files.values():
        touch(path)
    touched = run()
    assert {s: touched[s] for s in CROSS_ENCODER_STEPS} == dict.fromkeys(CROSS_ENCODER_STEPS, "cached")
    assert {s: touched[s] for s in NEVER_CACHED} == dict.fromkeys(NEVER_CACHED, "completed")
    flip_one_byte(files["collection"])
    assert run() == dict.fromkeys(every_step, "completed")


# ------------------------------------------------------------------------------------- model inputs in the cache key

ROOT = Path(__file__).resolve().parents[2]
# Steps that load a model from a spec (stage_train_pairs stands in for the multi-GPU training step it feeds).
LOADS_A_MODEL_SPEC = {"train_cross_encoder", "train_cross_encoder_curriculum", "train_dual_encoder",
                      "distill_cross_encoder", "distill_dual_encoder", "load_teacher_model", "score_teacher",
                      "prepare_causal_lm", "prepare_retriever", "stage_train_pairs"}
DUAL_ENCODER_RETRIEVER = {"kind": "dual_encoder", "k": 2, "model": {"kind": "tiny_bert", "vocab_size": 200}}
TINY_GPT2 = {"kind": "tiny_gpt2", "vocab_size": 300}


def _demo_configs():
    """(pipeline, parameters) for every demo config, the multi-GPU variants, and the optional models switched on."""
    configs = [(p.stem, yaml.safe_load(p.read_text())["parameters"]) for p in sorted((ROOT / "configs/demo").glob(
        "*.yaml")) if p.stem != "retraining"]  # retraining is dynamic: its steps are cross_encoder_steps' (below)
    by_name = dict(configs)
    configs += [(f"{name}_multi_gpu", by_name[name]) for name in ("cross_encoder_training", "sft_training")]
    rag, dpo = by_name["rag_intent"], by_name["dpo_alignment"]
    configs.append(("rag_intent", {**rag, "rag": {**rag["rag"], "retriever": DUAL_ENCODER_RETRIEVER}}))
    configs.append(("dpo_alignment", {**dpo, "dpo": {**dpo["dpo"], "reference": "model",
                                                     "reference_model": TINY_GPT2}}))
    return configs


@pytest.mark.parametrize(("name", "parameters"), _demo_configs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_step_that_loads_a_model_spec_takes_its_fingerprints(name, parameters):
    from pydantic import TypeAdapter

    from cli.config_check import pipelines_by_name

    pipe = pipelines_by_name()[name]
    signature = inspect.signature(pipe.entrypoint)
    pipe.prepare(**{k: TypeAdapter(signature.parameters[k].annotation).validate_python(v)
                    for k, v in parameters.items()})
    invocations = pipe.invocations
    loaders = {i: inv for i, inv in invocations.items() if inv.step.name in LOADS_A_MODEL_SPEC
               or (inv.step.name == "score_difficulty" and inv.parameters["difficulty"].semantic_model is not None)
               or (inv.step.name == "retrieve_passages" and "retriever_model_dir" in inv.input_artifacts)}
    assert loaders, name
    for invocation_id, invocation in loaders.items():
        source = invocation.input_artifacts.get("model_fingerprints")
        assert source is not None, f"{name}: {invocation_id} has no model_fingerprints input"
        assert invocations[source.invocation_id].step.name == "fingerprint_models"
        assert invocations[source.invocation_id].step.enable_cache is False


@pytest.mark.slow
def test_cross_encoder_training_retrains_when_local_weights_change(tmp_path, zenml_client):
    """A ``kind: local`` base model: an unchanged folder keeps the trained model cached; the same folder with other
    weights (same config and tokenizer, another seed) re-trains, although the spec (the path) is the same."""
    from finetune.models.sources import build_tiny_bert
    from finetune.params import TinyBertModel
    from pipelines.ranking import cross_encoder_training

    files = write_demo_msmarco(tmp_path / "data", num_queries=12, passages_per_query=8, seed=5)
    texts = [line.split("\t", 1)[1] for line in files["collection"].read_text().splitlines()]
    tiny = {"vocab_size": 200, "hidden_size": 16}
    model = build_tiny_bert(TinyBertModel(**tiny, seed=0), tmp_path / "base_model", texts)
    config = _cross_encoder_config(tmp_path, files, {"kind": "local", "path": str(model)},
                                   f"cache_local_{uuid.uuid4().hex[:8]}")

    def run():
        run = zenml_client.get_pipeline_run(cross_encoder_training.with_options(config_path=str(config))().id)
        step = run.steps["fingerprint_base_model"]
        return {name: str(s.status) for name, s in run.steps.items()}, step.outputs["model_fingerprints"][0].load()

    first, fingerprint = run()
    assert set(first.values()) == {"completed"} and fingerprint["base_model"].startswith("local sha256:")
    unchanged, same = run()
    assert same == fingerprint and unchanged["fingerprint_base_model"] == "completed"
    assert {s: unchanged[s] for s in CROSS_ENCODER_STEPS} == dict.fromkeys(CROSS_ENCODER_STEPS, "cached")

    weights = (model / "model.safetensors").read_bytes()
    build_tiny_bert(TinyBertModel(**tiny, seed=1), model, texts)  # new weights in place, same folder
    assert (model / "model.safetensors").read_bytes() != weights
    replaced, other = run()
    assert other["base_model"] != fingerprint["base_model"]
    assert replaced["train_cross_encoder"] == replaced["rerank_candidates"] == "completed"
    assert replaced["rerank_starting_point"] == "completed"  # the untrained baseline is the new model too
    assert {s: replaced[s] for s in ("load_msmarco", "retrieve_first_stage", "mine_hard_negatives")} == dict.fromkeys(
        ("load_msmarco", "retrieve_first_stage", "mine_hard_negatives"), "cached")
