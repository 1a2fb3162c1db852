"""Bad input inside a whole pipeline run: the run fails, the failing step's last traceback line is the one-line
error, the failing step left no output artifact, and no model version is left registered.

Each case fails at a different depth: the data loader (MS MARCO qrels naming an unknown passage), model
preparation (LoRA target modules the model lacks), and distillation (teacher and student vocabularies differ).
Runs go through ``with_options(config_path=...)`` on the throw-away ZenML store, as ``zenml pipeline run -c`` does.
"""

import importlib
import uuid

import pytest
import yaml

from finetune.data.demo import write_demo_msmarco

pytestmark = pytest.mark.slow

TRAINING = {"max_steps": 2, "per_device_batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.0,
            "max_length": 48, "logging_steps": 1, "eval_steps": 2, "device": "cpu", "precision": "fp32"}
RANKING_TRAINING = {"max_steps": 2, "per_device_batch_size": 8, "learning_rate": 1e-3, "max_length": 64,
                    "logging_steps": 1, "device": "cpu", "precision": "fp32"}
TINY_GPT2 = {"kind": "tiny_gpt2", "hidden_size": 32, "num_layers": 2, "vocab_size": 400,
             "max_position_embeddings": 64}


def _fail(client, tmp_path, module: str, pipeline: str, parameters: dict, step: str) -> str:
    """Run ``pipeline`` with ``parameters``; assert it failed in ``step`` leaving nothing behind; return the
    last line of that step's traceback."""
    from cli.config_check import validate_config

    model_name = f"bad_{pipeline}_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{pipeline}.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": model_name}, "parameters": parameters}))
    assert validate_config(path) == []  # the config itself is valid: the problem only shows while running
    # Fail-fast: the run stops at the failing step and raises that step's own exception, not ZenML's summary.
    with pytest.raises(Exception) as raised:
        getattr(importlib.import_module(module), pipeline).with_options(config_path=str(path))()
    failed = client.list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    assert failed.name.startswith(pipeline) and str(failed.status) == "failed"
    assert str(failed.steps[step].status) == "failed"
    # The only failed step is the real one: no sibling branch ran on and failed against the deleted version.
    assert [name for name, s in failed.steps.items() if str(s.status) == "failed"] == [step]
    assert not failed.steps[step].outputs  # no half-written artifact from the failing step
    assert client.list_model_versions(model_name, size=10).items == []
    last = failed.steps[step].exception_info.traceback.strip().splitlines()[-1]
    assert last.endswith(str(raised.value))
    return last


def test_qrels_naming_an_unknown_passage_fail_in_the_loader(tmp_path, zenml_client):
    files = write_demo_msmarco(tmp_path / "data", num_queries=8, passages_per_query=6, seed=5)
    qid = files["qrels"].read_text().split()[0]
    lines = files["qrels"].read_text().splitlines() + [f"{qid} 0 999999 1"]
    files["qrels"].write_text("\n".join(lines) + "\n")
    source = {"kind": "msmarco_files", **{k: str(files[k]) for k in ("collection", "queries", "qrels")}}
    last = _fail(zenml_client, tmp_path, "pipelines.ranking", "cross_encoder_training", {
        "data": {"train": source, "eval_fraction": 0.25, "split_seed": 1},
        "cross_encoder": {"model": {"kind": "tiny_bert", "vocab_size": 300}, "training": RANKING_TRAINING},
    }, "load_msmarco")
    assert last == (f"finetune.data.types.DataFormatError: {files['qrels']}:{len(lines)}: pid 999999 is not in "
                    "the collection")


def test_lora_target_modules_missing_from_the_model_fail_in_training(tmp_path, zenml_client):
    from finetune.data.demo_text import write_demo_instructions

    data_file = write_demo_instructions(tmp_path / "data", "alpaca", num_examples=40, seed=2)
    last = _fail(zenml_client, tmp_path, "pipelines.generation", "sft_training", {
        "data": {"source": {"kind": "file", "path": str(data_file)}, "validation_fraction": 0.1,
                 "test_fraction": 0.1},
        "sft": {"model": TINY_GPT2, "method": {"name": "lora", "target_modules": ["q_proj", "v_proj"]},
                "training": TRAINING},
        "evaluation": {"max_new_tokens": 8},  # the untuned baseline is evaluated first: fit its 64 positions
    }, "train_sft_model")
    assert last.startswith("ValueError: method.target_modules: ['q_proj', 'v_proj'] match no module of "
                           "GPT2LMHeadModel (its leaf modules: [")


def test_teacher_and_student_with_different_vocabularies_fail_before_distilling(tmp_path, zenml_client):
    last = _fail(zenml_client, tmp_path, "pipelines.generation", "lm_distillation", {
        "data": {"source": {"kind": "demo", "output_dir": str(tmp_path / "text"), "num_documents": 30}},
        "distillation": {"teacher": TINY_GPT2, "student": {**TINY_GPT2, "vocab_size": 300}, "method": {"name": "full"},
                         "block_size": 32, "training": TRAINING},
    }, "distill_causal_lm_model")
    assert last.startswith("ValueError: teacher ") and " have different vocabulary sizes (" in last
    assert last.endswith("distillation needs one shared tokenizer")


def test_a_failing_branch_reports_its_own_error_and_no_sibling_fails(tmp_path, zenml_client):
    """method_comparison fans out one branch per method. A LoRA branch whose target modules the model lacks fails;
    the user sees that ValueError, and no other branch fails afterwards with ``FOREIGN KEY constraint failed``
    (what ZenML's continue-on-failure default did once the failure hook had deleted the run's model version)."""
    from finetune.data.demo_text import write_demo_instructions

    data_file = write_demo_instructions(tmp_path / "data", "alpaca", num_examples=40, seed=2)
    last = _fail(zenml_client, tmp_path, "pipelines.generation", "method_comparison", {
        "data": {"source": {"kind": "file", "path": str(data_file)}, "validation_fraction": 0.1,
                 "test_fraction": 0.1},
        "comparison": {"model": TINY_GPT2, "training": TRAINING,
                       "methods": [{"name": "full"}, {"name": "lora", "target_modules": ["q_proj"]},
                                   {"name": "prompt_tuning", "num_virtual_tokens": 4}]},
        # the untuned model is evaluated before any method trains: generation must fit the tiny model's 64 positions
        "evaluation": {"max_new_tokens": 8, "batch_size": 8, "num_samples": 2, "device": "cpu"},
    }, "train_lora")
    assert last.startswith("ValueError: method.target_modules: ['q_proj'] match no module of GPT2LMHeadModel")
