"""Every file under configs/ is a valid run config for the pipeline it is named after."""

from pathlib import Path

import pytest

from pipelines.config_check import run_configs, validate_config

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
