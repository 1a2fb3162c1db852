"""A stand-in for ZenML's step context, so the registry steps run through ``.entrypoint()`` on the test store.

The registry steps read the running step's context: its model version, the pipeline run (id, name, parameters)
and their input artifacts. Outside a run ``get_step_context()`` raises, so each step module's reference to it is
swapped for a stub whose model version is a real one on the throw-away store (``model`` is
``model_version.to_model_class()``, as in ZenML's own context), so what the step logs and which stage it sets are
read back from the store. ``record`` (metadata on the running step) is captured per module.
"""

import uuid
from types import SimpleNamespace

import pytest


class StubStepContext:
    """What the registry steps read from ``zenml.steps.StepContext``."""

    def __init__(self, model_version=None, parameters: dict | None = None, inputs: dict | None = None):
        self.model_version = model_version
        self.pipeline_run = SimpleNamespace(id=uuid.uuid4(), name=f"run_{uuid.uuid4().hex[:8]}",
                                            config=SimpleNamespace(parameters=parameters))
        self.inputs = inputs or {}

    @property
    def model(self):
        return self.model_version.to_model_class()


@pytest.fixture
def model_name(zenml_client) -> str:
    """A fresh registered model on the throw-away store."""
    name = f"model_{uuid.uuid4().hex[:8]}"
    zenml_client.create_model(name)
    return name


@pytest.fixture
def step_context(monkeypatch, zenml_client):
    """``step_context(module, model_name=..., version=..., parameters=..., inputs=...)``: run ``module``'s step
    in a stub context (the named version is created on the store) and return ``(context, recorded)``, where
    ``recorded`` lists what the step passed to ``record``."""

    def enter(module, model_name: str | None = None, version: str = "candidate", parameters: dict | None = None,
              inputs: dict | None = None):
        model_version = None if model_name is None else zenml_client.create_model_version(model_name, version)
        context = StubStepContext(model_version, parameters, inputs)
        monkeypatch.setattr(module, "get_step_context", lambda: context)
        monkeypatch.setattr("steps.registry.model_versions.get_step_context", lambda: context)
        recorded: list[dict] = []
        monkeypatch.setattr(module, "record", recorded.append)
        return context, recorded

    return enter
