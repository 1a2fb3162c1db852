"""Generation pipelines end to end on a throw-away ZenML store, with tiny models on generated data.

Runs the pipelines exactly as ``zenml pipeline run ... -c <config>`` does (``with_options(config_path=...)``).
"""

import json
import re
import uuid
from pathlib import Path

import pytest
import yaml

from finetune.data.demo_text import write_demo_instructions
from finetune.data.types import DataFormatError

pytestmark = pytest.mark.slow

TRAINING = {"per_device_batch_size": 8, "learning_rate": 5e-3, "warmup_ratio": 0.0, "max_length": 48,
            "logging_steps": 5, "eval_steps": 10, "device": "cpu", "precision": "fp32"}
EVALUATION = {"max_new_tokens": 12, "batch_size": 16, "num_samples": 3, "few_shot_k": 2, "device": "cpu",
              "perplexity_block_size": 48}
TINY = {"hidden_size": 32, "num_layers": 2, "vocab_size": 400, "max_position_embeddings": 64}


def _write(tmp_path, name, config):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(pipeline_name, config_path):
    import pipelines.generation as generation

    return getattr(generation, pipeline_name).with_options(config_path=str(config_path))()


def _statuses(client, run_id):
    return {name: str(step.status) for name, step in client.get_pipeline_run(run_id).steps.items()}


def _output(run, step, name):
    return run.steps[step].outputs[name][0].load()


def test_sft_training_promotes_caches_and_rejects_malformed_data(tmp_path, zenml_client):
    from zenml.enums import ModelStages

    from cli.config_check import validate_config
    from cli.show import summary

    data_file = write_demo_instructions(tmp_path / "data", "alpaca", num_examples=120, seed=2)
    model_name = f"sft_{uuid.uuid4().hex[:8]}"
    config = _write(tmp_path, "sft_training", {
        "model": {"name": model_name},
        "parameters": {
            "data": {"source": {"kind": "file", "path": str(data_file)}, "validation_fraction": 0.1,
                     "test_fraction": 0.1},
            "sft": {"model": {"kind": "tiny_gpt2", **TINY}, "method": {"name": "full"},
                    "training": {**TRAINING, "max_steps": 40}},
            "evaluation": EVALUATION,
            "mc_data": {"source": {"kind": "demo", "output_dir": str(tmp_path / "arc"), "num_questions": 8}},
        },
    })
    assert validate_config(config) == []

    run = zenml_client.get_pipeline_run(_run("sft_training", config).id)
    assert str(run.status) == "completed"
    stats = _output(run, "train_sft_model", "training_stats")
    assert stats["method"] == "full" and stats["steps"] == 40 and stats["trainable_parameters"] == stats[
        "total_parameters"]
    metrics = _output(run, "evaluate_generations", "generation_metrics")
    few_shot = _output(run, "few_shot_baseline", "few_shot_metrics")
    decision = _output(run, "promote_model", "promotion_decision")
    assert decision["promote"] == (metrics["test_rougeL"] > few_shot["few_shot_test_rougeL"])
    shown = summary("sft_training")
    assert re.search(rf"test_rougeL +{metrics['test_rougeL']:.4f}", shown) and decision["reason"] in shown
    version = zenml_client.get_model_version(model_name, 1)
    assert version.stage == (ModelStages.PRODUCTION if decision["promote"] else ModelStages.STAGING)
    assert version.run_metadata["test_rougeL"] == pytest.approx(metrics["test_rougeL"])
    assert "test_perplexity" in version.run_metadata and "test_mc_accuracy" in _output(
        run, "evaluate_multiple_choice", "mc_metrics")
    report = _output(run, "build_generation_report", "report")
    assert "data:image/png;base64," in report and "rougeL" in report

    assert version.run_metadata["data_fingerprints"] == _output(run, "fingerprint_instructions", "source_fingerprints")
    assert version.run_metadata["configuration"]["sft"]["method"]["name"] == "full"
    assert decision["reason"] in report

    # An identical second run reuses every artifact; only the fingerprint and promotion steps execute (and the
    # report, when the decision changed: the second run is compared with the first if that one was promoted).
    second = _statuses(zenml_client, _run("sft_training", config).id)
    assert {s for s, status in second.items() if status == "completed"} - {"build_generation_report"} == {
        "fingerprint_instructions", "fingerprint_multiple_choice", "fingerprint_base_model", "promote_model"}

    # A malformed record stops the run with one line naming file and line; no model version is left behind.
    lines = data_file.read_text().splitlines()
    lines[6] = json.dumps({"instruction": "no answer here", "input": ""})
    data_file.write_text("\n".join(lines) + "\n")
    versions_before = {v.number for v in zenml_client.list_model_versions(model_name, size=100).items}
    with pytest.raises(DataFormatError, match="has no 'output'"):  # fail-fast: the step's own error
        _run("sft_training", config)
    failed = zenml_client.list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    last_line = failed.steps["load_instructions"].exception_info.traceback.strip().splitlines()[-1]
    assert last_line == f"finetune.data.types.DataFormatError: {data_file}:7: Alpaca record has no 'output'"
    assert {v.number for v in zenml_client.list_model_versions(model_name, size=100).items} == versions_before


def test_causal_lm_training_lowers_held_out_perplexity(tmp_path, zenml_client):
    config = _write(tmp_path, "causal_lm_training", {
        "model": {"name": f"clm_{uuid.uuid4().hex[:8]}"},
        "parameters": {
            "data": {"source": {"kind": "demo", "output_dir": str(tmp_path / "text"), "num_documents": 30}},
            "causal_lm": {"model": {"kind": "tiny_llama", **TINY}, "method": {"name": "full"}, "block_size": 48,
                          "training": {**TRAINING, "max_steps": 40}},
            "evaluation": EVALUATION,
        },
    })
    run = zenml_client.get_pipeline_run(_run("causal_lm_training", config).id)
    assert str(run.status) == "completed"
    before = _output(run, "evaluate_base_perplexity", "perplexity_metrics")["base_test_perplexity"]
    after = _output(run, "evaluate_perplexity", "perplexity_metrics")["test_perplexity"]
    assert after < before / 3  # random init ≈ vocabulary size (~400); 40 steps learn the corpus's phrasing
    logged = zenml_client.get_model_version(run.model_version.model.name, 1).run_metadata
    assert logged["test_perplexity"] == pytest.approx(after) and logged["base_test_perplexity"] == pytest.approx(
        before)
    decision = _output(run, "promote_model", "promotion_decision")
    assert decision["promote"] and not decision["higher_is_better"]  # lower perplexity than the base model
    assert "Held-out perplexity" in _output(run, "build_causal_lm_report", "report")


def test_method_comparison_table_has_one_row_per_method(tmp_path, zenml_client):
    config = _write(tmp_path, "method_comparison", {
        "model": {"name": f"cmp_{uuid.uuid4().hex[:8]}"},
        "parameters": {
            "data": {"source": {"kind": "demo", "output_dir": str(tmp_path / "data"), "num_examples": 80}},
            "comparison": {"model": {"kind": "tiny_gpt2", **TINY},
                           "methods": [{"name": "full"}, {"name": "lora"}, {"name": "prompt_tuning"}],
                           "training": {**TRAINING, "max_steps": 6}},
            "evaluation": EVALUATION,
            "mc_data": {"source": {"kind": "demo", "output_dir": str(tmp_path / "arc"), "num_questions": 8}},
        },
    })
    run = zenml_client.get_pipeline_run(_run("method_comparison", config).id)
    assert str(run.status) == "completed"
    table = _output(run, "collect_prompt_tuning", "method_results")
    assert table["method"].tolist() == ["untuned", "full", "lora", "prompt_tuning"]  # the baseline row first
    trainable = dict(zip(table["method"], table["trainable_parameters"], strict=True))
    assert trainable["full"] > trainable["lora"] > trainable["prompt_tuning"] == 8 * 32 > trainable["untuned"] == 0
    trained = table[table["method"] != "untuned"]
    for column in ("peak_memory_mb", "train_seconds", "tokens_per_second", "validation_loss", "test_perplexity",
                   "test_rougeL", "test_mc_accuracy", "rougeL_vs_untuned", "rougeL_vs_untuned_p", "nll_vs_untuned"):
        assert trained[column].notna().all(), column
    untuned = table.set_index("method").loc["untuned"]
    assert untuned[["test_perplexity", "test_rougeL", "test_mc_accuracy"]].notna().all()
    for _, row in trained.iterrows():  # each difference is the method's mean minus the untuned model's
        assert row["rougeL_vs_untuned"] == pytest.approx(row["test_rougeL"] - untuned["test_rougeL"])
        assert row["rougeL_vs_untuned_n"] >= 2 and row["rougeL_vs_untuned_p"] <= 1.0
    report = _output(run, "build_method_comparison_report", "report")
    methods, promotion = report.split("<h2>Promotion</h2>")
    # results: header + 4 rows; paired comparisons: header + 3 methods
    assert methods.count("<tr>") == 5 + 4 and "data:image/png;base64," in report and "ROUGE-L − untuned" in methods
    decision = _output(run, "promote_model", "promotion_decision")
    best = _output(run, "select_best_method", "best_method")
    assert best == trained.loc[trained["test_rougeL"].idxmax(), "method"] and decision["reason"] in promotion
    assert decision["baseline"] == pytest.approx(untuned["test_rougeL"])  # the gate's baseline: the untuned model


def test_tokenize_step_is_cached_across_learning_rates_and_reruns_for_a_new_max_length(tmp_path, zenml_client):
    """Issue 19: the tokenized splits' cache key is data + tokenizer + max_length (+ template), not the training
    parameters, and the dashboard shows them (their HTML page)."""
    def config(learning_rate, max_length):
        return _write(tmp_path, f"sft_{learning_rate}_{max_length}", {
            "model": {"name": "sft_tokenize_cache"},
            "parameters": {
                "data": {"source": {"kind": "demo", "output_dir": str(tmp_path / "data"), "num_examples": 60}},
                "sft": {"model": {"kind": "tiny_gpt2", **TINY}, "method": {"name": "full"},
                        "training": {**TRAINING, "learning_rate": learning_rate, "max_length": max_length,
                                     "max_steps": 4}},
                "evaluation": {**EVALUATION, "num_samples": 2},
            },
        })

    first = zenml_client.get_pipeline_run(_run("sft_training", config(5e-3, 48)).id)
    tokenized = _output(first, "tokenize_instructions", "tokenized_train")
    assert tokenized.stats["max_length"] == 48 and tokenized.rows == tokenized.load().num_rows > 0
    artifact = first.steps["tokenize_instructions"].outputs["tokenized_train"][0]
    assert artifact.run_metadata["truncation_rate"] == tokenized.stats["truncation_rate"]
    pages = [v.uri for v in artifact.visualizations]
    assert len(pages) == 1 and "truncation rate" in Path(pages[0]).read_text()

    learning_rate = _statuses(zenml_client, _run("sft_training", config(1e-3, 48)).id)
    assert learning_rate["tokenize_instructions"] == "cached" and learning_rate["train_sft_model"] == "completed"
    max_length = _statuses(zenml_client, _run("sft_training", config(1e-3, 40)).id)
    assert max_length["tokenize_instructions"] == "completed" and max_length["train_sft_model"] == "completed"
