"""The Model Control Plane helpers shared by the registry steps and the failure hook, on the throw-away store."""

import uuid

import pytest
from zenml import Model, pipeline, step
from zenml.enums import ModelStages

from steps.registry.model_versions import discard_version, resolve_parents, version_in_stage


def test_version_in_stage_is_none_without_such_a_version_or_model(model_name, zenml_client):
    assert version_in_stage(model_name, "production") is None
    assert version_in_stage(f"{model_name}_absent", "production") is None
    version = zenml_client.create_model_version(model_name, "one")
    version.set_stage(ModelStages.STAGING)
    assert version_in_stage(model_name, "staging").id == version.id


def test_resolve_parents_pins_a_registered_stage_or_name_and_passes_specs_through(model_name, zenml_client):
    zenml_client.create_model_version(model_name, "first")
    zenml_client.create_model_version(model_name, "second").set_stage(ModelStages.PRODUCTION)
    parents = resolve_parents({"teacher": {"kind": "registered", "name": model_name},
                               "pinned": {"kind": "registered", "name": model_name, "version": "first"},
                               "base_model": {"kind": "tiny_bert", "vocab_size": 100}})
    assert (parents["teacher"]["resolved_version"], parents["teacher"]["version_number"]) == ("second", 2)
    assert (parents["pinned"]["resolved_version"], parents["pinned"]["version_number"]) == ("first", 1)
    assert parents["base_model"] == {"kind": "tiny_bert", "vocab_size": 100}
    assert resolve_parents(None) == {}


def test_an_unstaged_version_of_no_run_is_discarded_and_a_staged_one_kept(model_name, zenml_client):
    loose = zenml_client.create_model_version(model_name, "loose")
    staged = zenml_client.create_model_version(model_name, "staged")
    staged.set_stage(ModelStages.STAGING)
    assert discard_version(loose.id, uuid.uuid4())
    assert not discard_version(loose.id, uuid.uuid4())  # already gone: nothing to do, no error
    assert not discard_version(staged.id, uuid.uuid4())
    with pytest.raises(KeyError):
        zenml_client.get_model_version(model_version_name_or_number_or_id=loose.id)
    assert zenml_client.get_model_version(model_version_name_or_number_or_id=staged.id).stage == ModelStages.STAGING


@step
def _one() -> int:
    return 1


def test_a_version_linked_to_another_run_is_kept(model_name, zenml_client):
    """Only the run that created a version may discard it."""

    @pipeline(model=Model(name=model_name), enable_cache=False)
    def _creates_a_version():
        _one()

    run = zenml_client.get_pipeline_run(_creates_a_version().id)
    version = run.model_version
    assert not discard_version(version.id, uuid.uuid4())
    assert discard_version(version.id, run.id)
