"""``dpo_alignment`` end to end on a throw-away ZenML store: the demo config (data under tmp), and a bad file."""

import json
import uuid
from pathlib import Path

import pytest
import yaml

from finetune.data.types import DataFormatError

pytestmark = pytest.mark.slow

DEMO = Path(__file__).parents[2] / "configs" / "demo" / "dpo_alignment.yaml"


def _config(tmp_path, data=None, **dpo):
    config = yaml.safe_load(DEMO.read_text())
    config["model"] = {"name": f"dpo_{uuid.uuid4().hex[:8]}"}
    config["parameters"]["data"]["source"]["output_dir"] = str(tmp_path / "pairs")
    if data is not None:
        config["parameters"]["data"]["source"] = data
    config["parameters"]["dpo"].update(dpo)
    path = tmp_path / "dpo_alignment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def _run(config_path):
    from pipelines.generation import dpo_alignment

    return dpo_alignment.with_options(config_path=str(config_path))()


def test_demo_raises_held_out_preference_accuracy_and_reports_agreement(tmp_path, zenml_client):
    from cli.config_check import validate_config

    path, config = _config(tmp_path)
    assert validate_config(path) == []
    run = zenml_client.get_pipeline_run(_run(path).id)
    assert str(run.status) == "completed"
    metrics = run.steps["evaluate_preference_pairs"].outputs["preference_metrics"][0].load()
    assert metrics["test_pairs"] == 60 and metrics["test_preference_accuracy"] > 0.6
    assert metrics["test_reward_margin"] > 0
    stats = run.steps["train_dpo_model"].outputs["training_stats"][0].load()
    assert stats["steps"] == 60 and stats["reference"] == "adapter_disabled" and stats["method"] == "lora"
    assert stats["trainable_parameters"] < stats["total_parameters"]
    log = run.steps["train_dpo_model"].outputs["training_log"][0].load()
    assert len([e for e in log if "eval_rewards/accuracies" in e]) == 4
    version = zenml_client.get_model_version(config["model"]["name"], 1)
    assert version.run_metadata["test_preference_accuracy"] == pytest.approx(metrics["test_preference_accuracy"])
    report = run.steps["build_dpo_report"].outputs["report"][0].load()
    assert "data:image/png;base64," in report and "Preference agreement over training" in report


def test_transcripts_without_a_shared_prompt_stop_the_run_naming_file_and_line(tmp_path, zenml_client):
    good = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello there.", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}
    bad = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.", "rejected": "\n\nHuman: Yo\n\nAssistant: Hello."}
    data_file = tmp_path / "hh.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in [good] * 9 + [bad]))
    path, _ = _config(tmp_path, data={"kind": "file", "path": str(data_file), "format": "hh_rlhf"})
    with pytest.raises(DataFormatError, match="share no prefix"):  # fail-fast: the step's own error
        _run(path)
    failed = zenml_client.list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    last_line = failed.steps["load_preferences"].exception_info.traceback.strip().splitlines()[-1]
    assert last_line == (f"finetune.data.types.DataFormatError: {data_file}:10: chosen and rejected share no "
                         "prefix ending in '\\n\\nAssistant:'")


def test_an_explicit_reference_model_is_prepared_and_used_for_training_and_evaluation(tmp_path, zenml_client):
    model = yaml.safe_load(DEMO.read_text())["parameters"]["dpo"]["model"]
    path, _ = _config(tmp_path, method={"name": "full"}, reference="model", reference_model={**model, "seed": 5},
                      training={**yaml.safe_load(DEMO.read_text())["parameters"]["dpo"]["training"], "max_steps": 4,
                                "eval_steps": 4})
    run = zenml_client.get_pipeline_run(_run(path).id)
    assert str(run.status) == "completed"
    reference = run.steps["prepare_reference"].outputs["base_model_dir"][0]
    base = run.steps["prepare_causal_lm"].outputs["base_model_dir"][0]
    assert reference.id != base.id
    for step in ("train_dpo_model", "evaluate_preference_pairs"):
        assert run.steps[step].inputs["reference_dir"][0].id == reference.id
    assert run.steps["train_dpo_model"].outputs["training_stats"][0].load()["reference"] == "model"
