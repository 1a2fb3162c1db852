"""Model Control Plane helpers shared by the registry steps and hooks (not steps themselves)."""

from __future__ import annotations

from uuid import UUID

from zenml import get_step_context
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.models import ModelVersionResponse

PER_ITEM_ARTIFACT = "per_item_scores"


def version_in_stage(model_name: str, stage: str) -> ModelVersionResponse | None:
    """The version of ``model_name`` in ``stage``, or None when there is none (or no such model yet)."""
    try:
        return Client().get_model_version(model_name, ModelStages(stage))
    except KeyError:
        return None


def stored_per_item(version: ModelVersionResponse | None, metric: str) -> dict[str, float] | None:
    """The per-item values of ``metric`` the gate stored on ``version`` (its ``per_item_scores`` artifact)."""
    artifact = None if version is None else version.get_artifact(PER_ITEM_ARTIFACT)
    if artifact is None:
        return None
    stored = artifact.load()
    return (stored["values"] or None) if stored.get("metric") == metric else None


def resolve_parents(parents: dict | None) -> dict:
    """Parent models by role; a registered one (``kind: registered``) gains the version it resolves to now."""
    resolved = {}
    for role, spec in (parents or {}).items():
        entry = dict(spec)
        if entry.get("kind") == "registered":
            requested = entry.get("version", "production")
            key = ModelStages(requested) if requested in {s.value for s in ModelStages} else requested
            version = Client().get_model_version(entry["name"], key)
            entry.update(resolved_version=version.name, version_number=version.number, version_id=str(version.id))
        resolved[role] = entry
    return resolved


def run_parameters() -> dict:
    """The running pipeline's parameters as the run config gave them (plain JSON values)."""
    return dict(get_step_context().pipeline_run.config.parameters or {})


def discard_version(version_id: UUID | str, run_id: UUID | str) -> bool:
    """Delete the model version ``version_id`` if it has no stage and no run other than ``run_id`` is linked to it.

    Called from a failure hook or from a pipeline body, never from a step that still has outputs to link to it.
    """
    client = Client()
    try:
        version = client.get_model_version(model_version_name_or_number_or_id=UUID(str(version_id)))
    except KeyError:  # already deleted (a dynamic run's step hook and run hook both fire)
        return False
    links = client.list_model_version_pipeline_run_links(model_version_id=version.id, size=50)
    if version.stage is None and {link.pipeline_run.id for link in links.items} <= {UUID(str(run_id))}:
        client.delete_model_version(version.id)
        return True
    return False
