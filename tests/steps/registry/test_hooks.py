"""The failure hook: a failed step's run leaves no unstaged model version of its own behind."""

import logging
import uuid
from types import SimpleNamespace

from zenml.enums import ModelStages

import steps.registry.hooks as module
from steps.registry.hooks import discard_model_version_on_failure


def _in_step(monkeypatch, version):
    run = SimpleNamespace(id=uuid.uuid4(), name="failed_run")
    context = SimpleNamespace(pipeline_run=run, model_version=version)
    monkeypatch.setattr(module.StepContext, "get", classmethod(lambda cls: context))


def test_a_failed_steps_unstaged_version_is_deleted(model_name, zenml_client, monkeypatch):
    version = zenml_client.create_model_version(model_name, "failed")
    _in_step(monkeypatch, version)
    discard_model_version_on_failure()
    assert [v.name for v in zenml_client.list_model_versions(model_name)] == []


def test_a_staged_version_survives_the_hook(model_name, zenml_client, monkeypatch):
    version = zenml_client.create_model_version(model_name, "kept")
    version.set_stage(ModelStages.STAGING)
    _in_step(monkeypatch, version)
    discard_model_version_on_failure()
    assert [v.name for v in zenml_client.list_model_versions(model_name)] == ["kept"]


def test_without_a_step_or_a_dynamic_run_it_only_warns(monkeypatch, caplog):
    monkeypatch.setattr(module.StepContext, "get", classmethod(lambda cls: None))
    monkeypatch.setattr(module.DynamicPipelineRunContext, "get", classmethod(lambda cls: None))
    with caplog.at_level(logging.WARNING):
        discard_model_version_on_failure()
    assert "neither a step nor a dynamic pipeline run is active" in caplog.text
