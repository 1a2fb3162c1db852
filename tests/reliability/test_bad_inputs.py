"""Bad-input matrix: every malformed file, config or model choice fails with ONE line naming file:line or the key.

Loader cases write a small broken file and call the real reader; config cases mutate a demo config, write it to a
temp YAML named after its pipeline and run ``cli.config_check.validate_config`` (what ``make test`` and the
CLI run before anything trains); model cases build tiny models from config. Pipeline-level cases are in
``test_bad_pipeline_runs.py``.
"""

import copy
import re
from pathlib import Path

import pytest
import torch
import yaml

from finetune.data.arc import load_arc_jsonl
from finetune.data.instructions import read_instruction_file
from finetune.data.msmarco import (
    load_msmarco_files,
    read_collection,
    read_qrels,
    read_queries,
    read_trec_run,
    read_triples,
)
from finetune.data.preferences import read_preferences
from finetune.data.text import read_text_lines
from finetune.data.types import DataFormatError

COLLECTION = "1\tparis is the capital of france\n2\tberlin is the capital of germany\n3\tthe cat sat\n"
QUERIES = "10\tcapital of france\n11\tcapital of germany\n"
QRELS = "10 0 1 1\n11 0 2 1\n"
ARC_OK = ('{"id": "q1", "question": {"stem": "Which is a city?", "choices": [{"text": "Paris", "label": "A"}, '
          '{"text": "Blue", "label": "B"}]}, "answerKey": "A"}\n')
HH_OK = '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: hello", "rejected": "\\n\\nHuman: hi\\n\\nAssistant: go away"}\n'


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _msmarco(tmp_path, collection=COLLECTION, queries=QUERIES, qrels=QRELS, run=None):
    paths = {k: _write(tmp_path, f"{k}.tsv", v) for k, v in
             {"collection": collection, "queries": queries, "qrels": qrels}.items()}
    if run is not None:
        paths["run"] = _write(tmp_path, "run.trec", run)
    return load_msmarco_files(**paths)


# (id, file name, content, reader, expected line-prefix after the path, what the message must also say)
FILE_CASES = [
    ("collection_three_columns", "collection.tsv", "1\tparis\textra column\n", read_collection, ":1: ",
     "expected 2 tab-separated columns"),
    ("collection_duplicate_pid", "collection.tsv", "1\tparis\n2\tberlin\n1\trome\n", read_collection, ":3: ",
     "duplicate pid 1 (first on line 1)"),
    ("queries_non_utf8", "queries.tsv", b"10\tcapital of france\n11\tcaf\xe9 au lait\n", read_queries, ":2: ",
     "invalid UTF-8 (byte 0xe9"),
    ("queries_non_integer_id", "queries.tsv", "q10\tcapital of france\n", read_queries, ":1: ",
     "is not a non-negative integer"),
    ("qrels_empty_file", "qrels.tsv", "", read_qrels, ": ", "file is empty"),
    ("qrels_three_columns", "qrels.tsv", "10 0 1 1\n11 0 2\n", read_qrels, ":2: ", "columns"),
    ("qrels_grade_not_integer", "qrels.tsv", "10 0 1 high\n", read_qrels, ":1: ", "grade 'high' is not an integer"),
    ("run_score_not_number", "run.trec", "10 Q0 1 1 nan? bm25\n", read_trec_run, ":1: ", "is not a number"),
    ("triples_two_columns", "triples.tsv", "query\tpositive only\n", read_triples, ":1: ", "columns"),
    ("instructions_missing_response", "sft.jsonl", '{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n',
     read_instruction_file, ":2: ", "must both be strings"),
    ("instructions_wrong_type", "sft.jsonl", '{"prompt": "a", "response": 5}\n', read_instruction_file, ":1: ",
     "'response' must both be strings"),
    ("instructions_non_utf8", "sft.jsonl", b'{"prompt": "a", "response": "b"}\n{"prompt": "\xff"}\n',
     read_instruction_file, ":2: ", "not valid UTF-8"),
    ("instructions_invalid_json", "sft.jsonl", '{"prompt": "a", "response": "b"}\n{"prompt": \n',
     read_instruction_file, ":2: ", "invalid JSON"),
    ("instructions_empty_file", "sft.jsonl", "", read_instruction_file, ":1: ", "no records"),
    ("preferences_hh_no_shared_prefix", "hh.jsonl",
     HH_OK + '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: a", "rejected": "\\n\\nHuman: bye\\n\\nAssistant: b"}\n',
     read_preferences, ":2: ", "share no prefix ending in"),
    ("preferences_wrong_type", "prefs.jsonl", '{"prompt": "q", "chosen": 3, "rejected": "b"}\n', read_preferences,
     ":1: ", "needs string fields 'chosen' and 'rejected'"),
    ("preferences_non_utf8", "prefs.jsonl", b'{"prompt": "q", "chosen": "b\xff", "rejected": "c"}\n',
     read_preferences, ":1: ", "not valid UTF-8"),
    ("preferences_missing_prompt", "prefs.jsonl", '{"prompt": 1, "chosen": "a", "rejected": "b"}\n',
     read_preferences, ":1: ", "needs a string field 'prompt'"),
    ("arc_answer_not_a_label", "arc.jsonl", ARC_OK + ARC_OK.replace('"answerKey": "A"', '"answerKey": "C"'),
     load_arc_jsonl, ":2: ", "'answerKey' 'C' is not one of the choice labels"),
    ("arc_stem_wrong_type", "arc.jsonl", ARC_OK.replace('"Which is a city?"', "5"), load_arc_jsonl, ":1: ",
     "'question.stem' must be a non-empty string"),
    ("text_non_utf8", "corpus.txt", b"first line\nsecond \xc3\x28 line\n", read_text_lines, ":2: ",
     "not valid UTF-8"),
]


@pytest.mark.parametrize(("name", "content", "reader", "where", "what"), [c[1:] for c in FILE_CASES],
                         ids=[c[0] for c in FILE_CASES])
def test_malformed_file_fails_with_one_line_naming_file_and_line(tmp_path, name, content, reader, where, what):
    path = _write(tmp_path, name, content)
    with pytest.raises(DataFormatError) as caught:
        reader(path)
    message = _one_line(caught.value)
    assert message.startswith(f"{path}{where}")
    assert what in message


def test_gzipped_preferences_with_invalid_utf8_name_file_and_line(tmp_path):
    import gzip

    path = tmp_path / "hh.jsonl.gz"
    path.write_bytes(gzip.compress(HH_OK.encode() + b'{"chosen": "\xfe", "rejected": "b"}\n'))
    with pytest.raises(DataFormatError) as caught:
        read_preferences(path)
    assert _one_line(caught.value) == f"{path}:2: not valid UTF-8"


@pytest.mark.parametrize(("files", "where", "what"), [
    ({"qrels": QRELS + "11 0 99 1\n"}, "qrels.tsv:3: ", "pid 99 is not in the collection"),
    ({"qrels": "12 0 1 1\n"}, "qrels.tsv:1: ", "qid 12 is not in the queries"),
    ({"run": "10 Q0 1 1 2.5 bm25\n10 Q0 77 2 1.5 bm25\n"}, "run.trec:2: ", "pid 77 is not in the collection"),
], ids=["qrels_unknown_pid", "qrels_unknown_qid", "run_unknown_pid"])
def test_judgments_or_runs_naming_unknown_ids_fail_with_file_and_line(tmp_path, files, where, what):
    with pytest.raises(DataFormatError) as caught:
        _msmarco(tmp_path, **files)
    message = _one_line(caught.value)
    assert message.startswith(f"{tmp_path / where}")
    assert what in message


# ------------------------------------------------------------------------------------------------ configs


def _set(config: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value


CONFIG_CASES = [
    # (id, pipeline, dotted key, value, the key path the one problem line must name, words it must contain)
    ("unknown_training_key", "sft_training", "parameters.sft.training.batchsize", 8,
     "parameters.sft.training.batchsize", "Extra inputs are not permitted"),
    ("wrong_type_learning_rate", "sft_training", "parameters.sft.training.learning_rate", "fast",
     "parameters.sft.training.learning_rate", "valid number"),
    ("negative_batch_size", "sft_training", "parameters.sft.training.per_device_batch_size", -4,
     "parameters.sft.training.per_device_batch_size", "greater than or equal to 1"),
    ("zero_batch_size_ranking", "cross_encoder_training",
     "parameters.cross_encoder.training.per_device_batch_size", 0,
     "parameters.cross_encoder.training.per_device_batch_size", "greater than or equal to 1"),
    ("unknown_pipeline_parameter", "dpo_alignment", "parameters.learning_rate", 1e-4,
     "parameters.learning_rate", "not a parameter of dpo_alignment"),
    ("unknown_top_level_key", "dual_encoder_training", "paramters", {}, "paramters", "unknown run-config key"),
    ("wrong_type_eval_batch", "sft_training", "parameters.evaluation.batch_size", "sixteen",
     "parameters.evaluation.batch_size", "valid integer"),
    # Checks that need only the params run before anything trains (they used to fail after training, or never).
    ("unknown_metric", "cross_encoder_training", "parameters.evaluation.metrics", ["ndcg@10", "prec@10"],
     "parameters.evaluation", "metrics: unknown ['prec@10']; use ranx names such as 'ndcg@10'"),
    ("template_with_literal_braces", "sft_training", "parameters.data.template", "{\"q\": {prompt}}\nA:",
     "parameters.data", "is not a valid format string (KeyError: '\"q\"'); write literal braces as '{{' and '}}'"),
    ("rag_template_with_a_stray_brace", "rag_intent", "parameters.rag.prompt_template",
     "P: {passages} Q: {query} }", "parameters.rag", "is not a valid format string (ValueError: Single '}'"),
    ("max_steps_zero", "sft_training", "parameters.sft.training.max_steps", 0, "parameters.sft.training",
     "max_steps: 0 would silently mean 'not set'"),
]


@pytest.mark.parametrize(("pipeline", "dotted", "value", "key", "what"), [c[1:] for c in CONFIG_CASES],
                         ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_gives_one_problem_line_naming_the_key(tmp_path, pipeline, dotted, value, key, what):
    from cli.config_check import validate_config

    config = copy.deepcopy(yaml.safe_load(Path(f"configs/demo/{pipeline}.yaml").read_text()))
    _set(config, dotted, value)
    path = tmp_path / f"{pipeline}.yaml"
    path.write_text(yaml.safe_dump(config))
    problems = validate_config(path)
    assert len(problems) == 1, problems
    assert "\n" not in problems[0]
    assert problems[0].startswith(f"{path}: {key}: ")
    assert what in problems[0]


def test_invalid_yaml_names_file_and_line(tmp_path):
    from cli.config_check import validate_config

    path = tmp_path / "sft_training.yaml"
    path.write_text("model:\n  name: x\nparameters:\n  data: [unclosed\n")
    problems = validate_config(path)
    assert len(problems) == 1 and "\n" not in problems[0]
    assert re.match(rf"{re.escape(str(path))}:\d+: invalid YAML", problems[0])


# ------------------------------------------------------------------------------------------------- models

TEXTS = [f"the cat number {i} sat on the mat near the river" for i in range(40)]


@pytest.mark.parametrize("resolver", ["finetune.models.sources:resolve_model",
                                      "finetune.models.causal:resolve_causal_model"], ids=["ranking", "causal"])
def test_model_path_that_does_not_exist_names_the_path(tmp_path, resolver):
    import importlib

    from finetune.params import LocalModel

    module, name = resolver.split(":")
    missing = tmp_path / "no_such_model"
    with pytest.raises(ValueError) as caught:
        getattr(importlib.import_module(module), name)(LocalModel(path=missing), tmp_path)
    assert _one_line(caught.value).startswith(f"{missing}: not a model directory")


def test_qlora_without_cuda_fails_in_one_sentence_before_loading(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from finetune.data.instructions import examples_frame
    from finetune.generation.training import sft_setup
    from finetune.params import SftParams

    frame = examples_frame([(f"e{i}", [{"role": "user", "content": t}, {"role": "assistant", "content": "yes"}])
                            for i, t in enumerate(TEXTS[:8])])
    params = SftParams(model={"kind": "tiny_gpt2"}, method={"name": "qlora"},
                       training={"max_steps": 1, "device": "cpu", "precision": "fp32"})
    with pytest.raises(ValueError) as caught:
        sft_setup(frame, frame, "{prompt}\n", params, tmp_path)
    assert _one_line(caught.value) == "QLoRA (4-bit NF4 quantisation with bitsandbytes) needs a CUDA GPU, and torch " \
                                      "sees none on this machine"
    assert not (tmp_path / "base").exists()


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    from finetune.models.causal import build_tiny_causal_lm
    from finetune.params import TinyGpt2Model

    return build_tiny_causal_lm(TinyGpt2Model(vocab_size=320), tmp_path_factory.mktemp("gpt2"), TEXTS)


def test_distillation_with_different_vocabularies_names_both_models(tmp_path, tiny_gpt2_dir):
    from finetune.generation.distillation import check_vocabularies
    from finetune.models.causal import build_tiny_causal_lm
    from finetune.params import TinyGpt2Model

    other = build_tiny_causal_lm(TinyGpt2Model(vocab_size=340), tmp_path / "student", TEXTS + ["zebra quartz"])
    with pytest.raises(ValueError) as caught:
        check_vocabularies(tiny_gpt2_dir, other)
    message = _one_line(caught.value)
    assert message.startswith(f"teacher {tiny_gpt2_dir} and student {other} have different ")
    assert "distillation" in message or "token → id" in message


def test_lora_target_modules_missing_from_the_model_names_the_key(tiny_gpt2_dir):
    from transformers import AutoModelForCausalLM

    from finetune.generation.methods import prepare_model
    from finetune.params import LoraMethod

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    with pytest.raises(ValueError) as caught:
        prepare_model(model, LoraMethod(target_modules=("c_attn", "q_proj")))
    message = _one_line(caught.value)
    assert message.startswith("method.target_modules: ['q_proj'] match no module of GPT2LMHeadModel ")
    assert "'c_attn'" in message  # the modules that do exist are listed, so the fix is visible
