"""Validate ZenML run configs against our pipelines before anything runs.

ZenML ignores unknown top-level keys of a run config, and only checks parameters when a run starts; this
checks every key up front and reports one line per problem: ``<file>: <key path>: <message>``.

Usage: ``python -m cli.config_check configs/demo/cross_encoder_training.yaml [...]``

Every YAML file under configs/ is a run config of the pipeline its file stem names (``<pipeline>.yaml`` or
``<pipeline>_<variant>.yaml``): configs/schedules/ (``retraining_nightly.yaml``: a ``schedule:`` with a checked cron
expression), configs/gpu/ and configs/stacks/ (``settings:`` checked field by field with ZenML's settings classes,
which themselves accept unknown keys silently) included.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError
from zenml.config.pipeline_run_configuration import PipelineRunConfiguration

PIPELINE_MODULES = ("pipelines.ranking", "pipelines.generation", "pipelines.retraining", "pipelines.multi_gpu")
# Settings classes of the stack-component flavors our configs use; general keys (docker, resources) come from ZenML.
COMPONENT_SETTINGS = {
    "orchestrator.kubernetes": "zenml.integrations.kubernetes.flavors:KubernetesOrchestratorSettings",
    "orchestrator.vm_aws": "zenml.integrations.skypilot_aws.flavors:SkypilotAWSOrchestratorSettings",
}
# Cron fields: minute, hour, day of month, month, day of week (0 and 7 are Sunday).
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


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
    # Empty parts (no prefix; a model-level validator's empty location) are left out, never doubled dots.
    return [".".join(part for part in (prefix, *(str(x) for x in e["loc"])) if part) + f": {e['msg']}"
            for e in error.errors()]


def cron_problems(expression: str) -> list[str]:
    """What is wrong with a five-field cron expression (numbers, ``*``, ranges, lists and ``/step``; empty if valid).

    Names (``MON``) and macros (``@daily``) are left out on purpose: not every orchestrator accepts them.
    """
    fields = str(expression).split()
    if len(fields) != 5:
        return [f"'{expression}' has {len(fields)} fields; cron needs 5 (minute hour day-of-month month day-of-week)"]
    problems = []
    for text, (name, low, high) in zip(fields, CRON_FIELDS, strict=True):
        for item in text.split(","):
            base, _, step = item.partition("/")
            bounds = [str(low), str(high)] if base == "*" else base.split("-")
            numbers = [b for b in bounds if b.isdigit()]
            if len(numbers) != len(bounds) or not 1 <= len(bounds) <= 2 or (step and not step.isdigit()):
                problems.append(f"{name} '{item}' is not a number, '*', a range a-b or one of those with /step")
            elif not all(low <= int(b) <= high for b in numbers) or int(numbers[0]) > int(numbers[-1]):
                problems.append(f"{name} '{item}' is outside {low}-{high} or a reversed range")
            elif step and int(step) == 0:
                problems.append(f"{name} '{item}' has a zero step")
    return problems


def _schedule_problems(path: Path, config: dict) -> list[str]:
    schedule = config.get("schedule")
    if "schedules" in path.parts and not schedule:
        return ["schedule: required for a file under schedules/ (cron_expression, or start_time + interval_second)"]
    if "schedules" not in path.parts and schedule:
        return ["schedule: put scheduled configs under configs/schedules/ (a schedule fails on the local stack)"]
    if isinstance(schedule, dict) and schedule.get("cron_expression") is not None:
        return [f"schedule.cron_expression: {p}" for p in cron_problems(schedule["cron_expression"])]
    return []


def _settings_class(key: str):
    from zenml.utils.settings_utils import get_general_settings

    if key in get_general_settings():
        return get_general_settings()[key]
    if key in COMPONENT_SETTINGS:
        module, name = COMPONENT_SETTINGS[key].split(":")
        return getattr(importlib.import_module(module), name)
    return None


def _settings_problems(config: dict) -> list[str]:
    """Settings keys and fields checked against ZenML's classes, at pipeline level and for every step."""
    from zenml.utils.settings_utils import is_valid_setting_key

    blocks = {"settings": config.get("settings") or {}}
    blocks.update({f"steps.{name}.settings": (step or {}).get("settings") or {}
                   for name, step in (config.get("steps") or {}).items() if isinstance(step, dict)})
    problems = []
    for where, settings in blocks.items():
        for key, value in settings.items():
            cls = _settings_class(key)
            if not is_valid_setting_key(key):
                problems.append(f"{where}.{key}: not a ZenML settings key (docker, resources, <component>.<flavor>)")
            elif cls is not None and isinstance(value, dict):
                problems += [f"{where}.{key}.{name}: unknown setting of {cls.__name__}"
                             for name in value if name not in cls.model_fields]
                try:
                    cls.model_validate(value)
                except ValidationError as exc:
                    problems += _format(exc, f"{where}.{key}")
                except ImportError:
                    # Kubernetes tolerations are parsed with the `kubernetes` client, which only the remote
                    # stack's environment installs; the field names were still checked above.
                    pass
    return problems


def validate_config(path: str | Path, pipeline_name: str | None = None) -> list[str]:
    """Return the problems of one run config (empty when valid).

    Args:
        path: The run config (YAML).
        pipeline_name: The pipeline it is for; by default the one its file stem names.
    """
    path = Path(path)
    if path.is_dir() or not path.exists():
        return [f"{path}: {'is a directory' if path.is_dir() else 'no such file'}, not a run config"]
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [f"{path}:{mark.line + 1 if mark else '?'}: invalid YAML ({getattr(exc, 'problem', exc)})"]
    if not isinstance(config, dict):
        return [f"{path}: top level must be a mapping"]
    pipe = pipelines_by_name().get(pipeline_name) if pipeline_name else pipeline_for(path, pipelines_by_name())
    parameters = set(inspect.signature(pipe.entrypoint).parameters) if pipe is not None else set()
    problems = [f"{path}: {key}: unknown run-config key"
                + (f" (a parameter of {pipe.name}: indent it under parameters:)" if key in parameters else "")
                for key in config if key not in PipelineRunConfiguration.model_fields]
    problems += [f"{path}: {line}" for line in _schedule_problems(path, config) + _settings_problems(config)]
    if config.get("enable_cache") is True:
        # ZenML applies a run-level value to every step, which would cache fingerprint_sources (stale data)
        # and promote_model (a stale gate); `false` is fine and forces a fresh run.
        problems.append(f"{path}: enable_cache: true would also cache the steps that must always run; remove it")
    try:
        PipelineRunConfiguration.model_validate(config)
    except ValidationError as exc:
        problems += [f"{path}: {line}" for line in _format(exc, "")]
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
    try:
        pipe.prepare(**values)
    except ValueError as exc:  # a rule that needs the pipeline (checked as it is composed): one line, not a trace
        return [f"{path}: {line}" for line in (_format(exc, "parameters") if isinstance(exc, ValidationError)
                                              else [" ".join(str(exc).split())])]
    problems += [f"{path}: steps.{name}: no such step in {pipe.name} (steps: {sorted(pipe.invocations)})"
                 for name in (config.get("steps") or {}) if name not in pipe.invocations]
    return problems


def cli_run(argv: list[str]) -> tuple[str, str] | None:
    """``(pipeline name, config path)`` when ``argv`` is ``zenml pipeline run <module>.<pipeline> -c <file>``."""
    if not argv or Path(argv[0]).name != "zenml" or argv[1:3] != ["pipeline", "run"]:
        return None
    source, config, args = None, None, argv[3:]
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            config = args[i + 1]
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg.startswith("-c") and len(arg) > 2:
            config = arg[2:]
        elif not arg.startswith("-") and source is None and (i == 0 or args[i - 1] not in ("-c", "--config")):
            source = arg
    return (source.rsplit(".", 1)[-1], config) if source and config else None


def check_cli_run(argv: list[str]) -> None:
    """Validate the run config of a ``zenml pipeline run ... -c <file>`` command before ZenML reads it.

    ZenML ignores a section at the wrong indentation (``cross_encoder:`` beside ``parameters:``) and reports a
    misspelled nested key as "Invalid or missing pipeline function entrypoint arguments"; the documented command
    imports this package first, so the whole file is checked here and each problem printed as one line, and the
    process exits with status 2 before anything runs or is registered.
    """
    found = cli_run(argv)
    if found is None:
        return
    problems = validate_config(found[1], pipeline_name=found[0])
    if problems:
        print("\n".join(problems), file=sys.stderr)
        raise SystemExit(2)


def run_configs(root: str | Path = "configs") -> list[Path]:
    """Every run config under ``root``, schedule, GPU and stack variants included."""
    return sorted(Path(root).rglob("*.yaml"))


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or run_configs()
    problems = [line for p in paths for line in validate_config(p)]
    print("\n".join(problems) if problems else f"{len(paths)} config(s) valid")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
