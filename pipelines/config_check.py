"""Validate ZenML run configs against our pipelines before anything runs.

ZenML ignores unknown top-level keys of a run config, and only checks parameters when a run starts; this
checks every key up front and reports one line per problem: ``<file>: <key path>: <message>``.

Usage: ``python -m pipelines.config_check configs/demo/cross_encoder_training.yaml [...]``
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError
from zenml.config.pipeline_run_configuration import PipelineRunConfiguration

PIPELINE_MODULES = ("pipelines.ranking", "pipelines.generation", "pipelines.retraining")
NOT_RUN_CONFIGS = ("stacks", "schedules")


def pipelines_by_name() -> dict:
    """All pipeline objects defined in our pipeline modules, by name."""
    from zenml.pipelines.pipeline_definition import Pipeline

    found = {}
    for module_name in PIPELINE_MODULES:
        module = importlib.import_module(module_name)
        found.update({name: obj for name, obj in vars(module).items() if isinstance(obj, Pipeline)})
    return found


def pipeline_for(path: Path, pipelines: dict):
    """The pipeline a config belongs to: the longest pipeline name that prefixes the file stem."""
    matches = [name for name in pipelines if path.stem == name or path.stem.startswith(name + "_")]
    return pipelines[max(matches, key=len)] if matches else None


def _format(error: ValidationError, prefix: str) -> list[str]:
    # Only the key path is folded (an empty prefix leaves a doubled dot); a message may quote a value with "..".
    return [f"{prefix}.{'.'.join(str(x) for x in e['loc'])}".replace("..", ".") + f": {e['msg']}"
            for e in error.errors()]


def validate_config(path: str | Path) -> list[str]:
    """Return the problems of one run config (empty when valid)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [f"{path}:{mark.line + 1 if mark else '?'}: invalid YAML ({getattr(exc, 'problem', exc)})"]
    if not isinstance(config, dict):
        return [f"{path}: top level must be a mapping"]
    problems = [f"{path}: {key}: unknown run-config key" for key in config
                if key not in PipelineRunConfiguration.model_fields]
    if config.get("enable_cache") is True:
        # ZenML applies a run-level value to every step, which would cache fingerprint_sources (stale data)
        # and promote_model (a stale gate); `false` is fine and forces a fresh run.
        problems.append(f"{path}: enable_cache: true would also cache the steps that must always run; remove it")
    try:
        PipelineRunConfiguration.model_validate(config)
    except ValidationError as exc:
        problems += [f"{path}: {line}" for line in _format(exc, "")]
    pipe = pipeline_for(path, pipelines_by_name())
    if pipe is None:
        return problems + [f"{path}: no pipeline named like this file (known: {sorted(pipelines_by_name())})"]
    signature = inspect.signature(pipe.entrypoint)
    given = config.get("parameters") or {}
    values = {}
    for name, value in given.items():
        if name not in signature.parameters:
            problems.append(f"{path}: parameters.{name}: not a parameter of {pipe.name}")
            continue
        try:
            values[name] = TypeAdapter(signature.parameters[name].annotation).validate_python(value)
        except ValidationError as exc:
            problems += [f"{path}: {line}" for line in _format(exc, f"parameters.{name}")]
    problems += [f"{path}: parameters.{name}: required" for name, p in signature.parameters.items()
                 if p.default is inspect.Parameter.empty and name not in given]
    if problems:
        return problems
    pipe.prepare(**values)
    problems += [f"{path}: steps.{name}: no such step in {pipe.name} (steps: {sorted(pipe.invocations)})"
                 for name in (config.get("steps") or {}) if name not in pipe.invocations]
    return problems


def run_configs(root: str | Path = "configs") -> list[Path]:
    """Every run config under ``root`` (stack and schedule examples are not run configs)."""
    return sorted(p for p in Path(root).rglob("*.yaml") if not set(p.relative_to(root).parts) & set(NOT_RUN_CONFIGS))


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or run_configs()
    problems = [line for p in paths for line in validate_config(p)]
    print("\n".join(problems) if problems else f"{len(paths)} config(s) valid")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
