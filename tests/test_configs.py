"""Every file under configs/ is a valid run config for the pipeline it is named after."""

from pathlib import Path

import pytest

from cli.config_check import run_configs, validate_config

CONFIGS = run_configs(Path(__file__).parent.parent / "configs")


def test_there_are_configs():
    assert any("demo" in p.parts for p in CONFIGS) and any("demo" not in p.parts for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_config_is_valid(path):
    assert validate_config(path) == []


def test_every_yaml_file_parses():
    import yaml

    root = Path(__file__).parent.parent / "configs"
    for path in root.rglob("*.y*ml"):
        yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("parameters:\n  data:\n    train: {kind: demo, num_queries: ten}\n",
         "parameters.data.train.demo.num_queries: Input should be a valid integer"),
        ("parameters:\n  data:\n    train: {kind: demo}\n  evaluation: {primry_metric: x}\n",
         "parameters.evaluation.primry_metric: Extra inputs are not permitted"),
        ("parameters:\n  data:\n    train: {kind: demo}\n  learning_rate: 0.1\n",
         "parameters.learning_rate: not a parameter of cross_encoder_training"),
        ("paramters:\n  data: {}\n", "paramters: unknown run-config key"),
        ("parameters:\n  data:\n    train: {kind: demo}\nsteps:\n  train_model: {}\n",
         "steps.train_model: no such step in cross_encoder_training"),
        ("parameters: {}\n", "parameters.data: required"),
        ("enable_cache: true\nparameters:\n  data:\n    train: {kind: demo}\n", "enable_cache: true would also cache"),
        ("parameters:\n  data: [\n", "invalid YAML"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, snippet, expected):
    path = tmp_path / "cross_encoder_training.yaml"
    path.write_text(snippet)
    problems = validate_config(path)
    assert any(expected in line for line in problems), problems
    assert all(line.startswith(str(path)) and "\n" not in line for line in problems)


# --- schedules, GPU and stack variants -----------------------------------------------------------------------

ROOT = Path(__file__).parent.parent
VARIANT_DIRS = ("schedules", "gpu", "stacks")


def _variants():
    return [p for p in CONFIGS if set(p.relative_to(ROOT / "configs").parts[:-1]) & set(VARIANT_DIRS)]


def test_there_are_schedule_gpu_and_stack_configs():
    found = {p.relative_to(ROOT / "configs").parts[0] for p in _variants()}
    assert found == set(VARIANT_DIRS)


@pytest.mark.parametrize("path", _variants(), ids=lambda p: str(p.relative_to(p.parents[1])))
def test_variant_runs_the_parameters_of_its_real_use_config(path):
    """A schedule / GPU / stack file adds settings to configs/<pipeline>.yaml; its parameters must not drift.

    A ``<pipeline>_multi_gpu`` file may only change gradient accumulation, and must keep the examples per update:
    gpu_count × per_device_batch_size × gradient_accumulation_steps of the base config on one device.
    """
    import yaml

    from cli.config_check import pipeline_for, pipelines_by_name

    name = pipeline_for(path, pipelines_by_name()).name
    base_path = ROOT / "configs" / f"{name.removesuffix('_multi_gpu')}.yaml"
    variant, base = yaml.safe_load(path.read_text()), yaml.safe_load(base_path.read_text())
    given, expected = variant["parameters"], base["parameters"]
    if name.endswith("_multi_gpu"):
        section = next(key for key in given if isinstance(given[key], dict) and "training" in given[key])
        gpus = next(step["settings"]["resources"]["gpu_count"] for step_name, step in variant["steps"].items()
                    if step_name.endswith("_multi_gpu"))

        def per_update(training, devices):
            return devices * training["per_device_batch_size"] * training.get("gradient_accumulation_steps", 1)

        assert per_update(given[section]["training"], gpus) == per_update(expected[section]["training"], 1)
        for params in (given, expected):
            params[section]["training"].pop("gradient_accumulation_steps", None)
    assert given == expected, f"{path.name}: parameters differ from {base_path.name}"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 2 * * 0", []),
        ("*/15 1-5 1,15 * 1-5", []),
        ("0 3 * * 7", []),  # 7 is Sunday too
        ("0 24 * * *", ["hour '24' is outside 0-23 or a reversed range"]),
        ("5-1 * * * *", ["minute '5-1' is outside 0-59 or a reversed range"]),
        ("*/0 * * * *", ["minute '*/0' has a zero step"]),
        ("0 2 * *", ["'0 2 * *' has 4 fields; cron needs 5 (minute hour day-of-month month day-of-week)"]),
        ("0 2 * * MON", ["day of week 'MON' is not a number, '*', a range a-b or one of those with /step"]),
    ],
)
def test_cron_expressions(expression, expected):
    from cli.config_check import cron_problems

    assert cron_problems(expression) == expected


DEMO = "parameters:\n  data:\n    train: {kind: demo}\n"


@pytest.mark.parametrize(
    ("folder", "snippet", "expected"),
    [
        ("schedules", DEMO, "schedule: required for a file under schedules/"),
        ("schedules", "schedule: {cron_expression: '0 25 * * *'}\n" + DEMO,
         "schedule.cron_expression: hour '25' is outside 0-23"),
        (".", "schedule: {cron_expression: '0 2 * * *'}\n" + DEMO, "schedule: put scheduled configs under"),
        ("gpu", "steps:\n  train_cross_encoder:\n    settings:\n      resources: {gpu_cuont: 1}\n" + DEMO,
         "steps.train_cross_encoder.settings.resources.gpu_cuont: unknown setting of ResourceSettings"),
        ("gpu", "steps:\n  train_cross_encoder:\n    settings:\n      resources: {gpu_count: -1}\n" + DEMO,
         "steps.train_cross_encoder.settings.resources.gpu_count: Input should be greater than or equal to 0"),
        ("gpu", "settings:\n  dokcer: {}\n" + DEMO, "settings.dokcer: not a ZenML settings key"),
        ("stacks", "settings:\n  orchestrator.kubernetes:\n    pod_setings: {}\n" + DEMO,
         "settings.orchestrator.kubernetes.pod_setings: unknown setting of KubernetesOrchestratorSettings"),
        ("stacks", "settings:\n  orchestrator.vm_aws: {use_spot: maybe}\n" + DEMO,
         "settings.orchestrator.vm_aws.use_spot: Input should be a valid boolean"),
    ],
)
def test_bad_schedules_and_settings_name_the_key(tmp_path, folder, snippet, expected):
    path = tmp_path / folder / "cross_encoder_training_variant.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(snippet)
    problems = validate_config(path)
    assert any(expected in line for line in problems), problems
    assert all(line.startswith(str(path)) and "\n" not in line for line in problems)


def test_schedule_on_the_local_stack_is_one_line_not_a_traceback(zenml_client, capsys):
    from cli import schedule

    path = ROOT / "configs" / "schedules" / "cross_encoder_training_weekly.yaml"
    assert schedule.main([str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}: not scheduled: stack 'default' uses the 'local' orchestrator" in err
    assert "kubernetes, airflow, vertex, sagemaker, azureml, kubeflow, databricks, hyperai" in err


def test_schedule_entry_point_refuses_configs_without_a_schedule(zenml_client, capsys):
    from cli import schedule

    assert schedule.main([str(ROOT / "configs" / "demo" / "cross_encoder_training.yaml")]) == 1
    assert "schedule: missing" in capsys.readouterr().err


def test_schedule_blocker_follows_the_orchestrator_capability():
    from types import SimpleNamespace

    from cli.schedule import schedule_blocker

    def stack(schedulable, flavor):
        orchestrator = SimpleNamespace(config=SimpleNamespace(is_schedulable=schedulable), flavor=flavor, name="o")
        return SimpleNamespace(name="s", orchestrator=orchestrator)

    assert schedule_blocker(stack(True, "kubernetes")) is None
    assert schedule_blocker(stack(True, "kubernetes"), dynamic=True) is None  # a CronJob runs the dynamic run
    assert schedule_blocker(stack(True, "vertex")) is None
    assert "cannot schedule a dynamic pipeline" in schedule_blocker(stack(True, "vertex"), dynamic=True)
    assert schedule_blocker(stack(False, "local")).startswith("stack 's' uses the 'local' orchestrator 'o'")


def test_retraining_schedule_on_the_local_stack_is_one_line_too(zenml_client, capsys):
    from cli import schedule

    assert schedule.main([str(ROOT / "configs" / "schedules" / "retraining_nightly.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "which cannot run schedules" in err


# --- rules of one pipeline, refused before anything runs ---------------------------------------------------------


def _merged(current, changes):
    if not isinstance(current, dict) or not isinstance(changes, dict):
        return changes
    return {**current, **{key: _merged(current.get(key), value) for key, value in changes.items()}}


def _demo_with(tmp_path, pipeline: str, **changes) -> Path:
    """configs/demo/<pipeline>.yaml with its parameters updated key by key (``section={key: value}``)."""
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "demo" / f"{pipeline}.yaml").read_text())
    config["parameters"] = _merged(config["parameters"], changes)
    path = tmp_path / f"{pipeline}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


TEACHER_LOSS = ("parameters.dual_encoder: Value error, loss: '{}' learns from teacher scores, which "
                "dual_encoder_training has none of; use loss: mnrl, or the dual_encoder_distillation pipeline")
NO_BASELINE = ("promotion.require_significance: this pipeline has no baseline for {} to be tested against; leave it "
               "false")
NO_PER_ITEM = ("promotion.require_significance: this pipeline has no per-item values of {} and {} to pair, so no "
               "paired test against the baseline; leave it false")


@pytest.mark.parametrize(("pipeline", "changes", "expected"), [
    ("dual_encoder_training", {"dual_encoder": {"loss": "margin_mse"}}, TEACHER_LOSS.format("margin_mse")),
    ("dual_encoder_training", {"dual_encoder": {"loss": "kl"}}, TEACHER_LOSS.format("kl")),
    ("retraining", {"family": "dual_encoder_training", "dual_encoder": {"loss": "margin_mse"}},
     TEACHER_LOSS.format("margin_mse")),
    ("dpo_alignment", {"promotion": {"require_significance": True}}, NO_BASELINE.format("test_preference_accuracy")),
    ("method_comparison", {"promotion": {"require_significance": True}, "primary_metric": "validation_loss"},
     NO_BASELINE.format("validation_loss")),  # a training measurement: the untuned model has none
    ("sft_training", {"promotion": {"require_significance": True}, "primary_metric": "test_bleu"},
     NO_PER_ITEM.format("test_bleu", "few_shot_test_bleu")),
    ("lm_distillation", {"promotion": {"require_significance": True}},
     NO_PER_ITEM.format("test_perplexity", "no_kd_test_perplexity")),
])
def test_a_pipelines_own_rule_is_one_line_before_anything_runs(tmp_path, pipeline, changes, expected):
    path = _demo_with(tmp_path, pipeline, **changes)
    assert validate_config(path) == [f"{path}: {expected}"]


@pytest.mark.parametrize(("pipeline", "changes"), [
    # The distillation student is the same DualEncoderParams, and learns from teacher scores.
    ("dual_encoder_distillation", {"distillation": {"student": {"loss": "kl"}}}),
    ("dual_encoder_distillation", {"distillation": {"student": {"loss": "margin_mse"}}}),
    # Pipelines whose baseline has per-item values run the paired test: the setting is accepted.
    ("sft_training", {"promotion": {"require_significance": True}}),
    ("causal_lm_training", {"promotion": {"require_significance": True}}),
    ("rlhf_training", {"promotion": {"require_significance": True}}),
    ("cross_encoder_training", {"promotion": {"require_significance": True}}),
    ("rag_intent", {"promotion": {"require_significance": True}}),  # a local generator: the untuned one
    ("method_comparison", {"promotion": {"require_significance": True}}),  # the untuned base model, per prompt
])
def test_what_those_rules_leave_alone_still_validates(tmp_path, pipeline, changes):
    assert validate_config(_demo_with(tmp_path, pipeline, **changes)) == []


def test_rag_intent_with_an_http_generator_has_no_baseline_to_test_against(tmp_path):
    import yaml

    path = _demo_with(tmp_path, "rag_intent", promotion={"require_significance": True})
    config = yaml.safe_load(path.read_text())
    config["parameters"]["rag"]["generator"] = {"kind": "http", "base_url": "http://127.0.0.1:1", "model": "m",
                                                "api_key_env": "RAG_TEST_KEY"}
    path.write_text(yaml.safe_dump(config))
    assert validate_config(path) == [f"{path}: {NO_BASELINE.format('test_rougeL')}"]
