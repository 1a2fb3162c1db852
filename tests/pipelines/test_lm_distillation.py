"""``lm_distillation`` end to end on a throw-away ZenML store: the demo config, with its data written under tmp."""

import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

DEMO = Path(__file__).parents[2] / "configs" / "demo" / "lm_distillation.yaml"


def _config(tmp_path, **distillation):
    config = yaml.safe_load(DEMO.read_text())
    config["model"] = {"name": f"lm_kd_{uuid.uuid4().hex[:8]}"}
    config["parameters"]["data"]["source"]["output_dir"] = str(tmp_path / "text")
    config["parameters"]["distillation"].update(distillation)
    path = tmp_path / "lm_distillation.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def _run(config_path):
    from pipelines.generation import lm_distillation

    return lm_distillation.with_options(config_path=str(config_path))()


def test_demo_distills_a_smaller_student_and_compares_it_with_teacher_and_baseline(tmp_path, zenml_client):
    from cli.config_check import validate_config

    path, config = _config(tmp_path)
    assert validate_config(path) == []
    run = zenml_client.get_pipeline_run(_run(path).id)
    assert str(run.status) == "completed"
    rows = {r["model"]: r for r in run.steps["compare_distilled_models"].outputs["model_comparison"][0].load()}
    assert set(rows) == {"teacher", "student", "no_kd"}
    assert rows["teacher"]["parameters"] > rows["student"]["parameters"] == rows["no_kd"]["parameters"]
    # The trained teacher is better than either small student on held-out articles.
    assert rows["teacher"]["test_perplexity"] < min(rows["student"]["test_perplexity"],
                                                    rows["no_kd"]["test_perplexity"])
    kd_stats = run.steps["distill_causal_lm_model"].outputs["training_stats"][0].load()
    ce_stats = run.steps["train_student_without_teacher"].outputs["training_stats"][0].load()
    assert kd_stats["alpha"] == 0.5 and ce_stats["alpha"] == 0.0 and kd_stats["steps"] == ce_stats["steps"] > 0
    log = run.steps["distill_causal_lm_model"].outputs["training_log"][0].load()
    assert any("kd_kl" in e for e in log)
    version = zenml_client.get_model_version(config["model"]["name"], 1)
    assert version.run_metadata["test_perplexity"] == pytest.approx(rows["student"]["test_perplexity"])
    assert version.run_metadata["teacher_test_perplexity"] == pytest.approx(rows["teacher"]["test_perplexity"])
    report = run.steps["build_distillation_report"].outputs["report"][0].load()
    assert "data:image/png;base64," in report and "no_kd" in report


def test_vocabulary_mismatch_fails_the_run_before_the_student_trains(tmp_path, zenml_client):
    student = yaml.safe_load(DEMO.read_text())["parameters"]["distillation"]["student"]
    path, _ = _config(tmp_path, student={**student, "vocab_size": 500}, teacher_training=None)
    with pytest.raises(ValueError, match=r"different vocabulary sizes \(600 vs 500\)"):  # fail-fast: its own error
        _run(path)
    failed = zenml_client.list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    last_line = failed.steps["distill_causal_lm_model"].exception_info.traceback.strip().splitlines()[-1]
    assert last_line.startswith("ValueError: teacher ") and "different vocabulary sizes (600 vs 500)" in last_line
    assert "train_student_without_teacher" not in failed.steps  # the run stopped at the first failure
    assert "compare_distilled_models" not in failed.steps  # nothing downstream of training ran
