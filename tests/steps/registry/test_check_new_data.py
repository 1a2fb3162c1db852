"""check_new_data through ``.entrypoint()``: retrain only when the sources' sha256 differ from production's record.

The step runs in a stub step context on the throw-away store (tests/steps/registry/conftest.py); production's
fingerprints are the ``data_fingerprints`` metadata the gate wrote on it.
"""

import pytest
from zenml import log_metadata
from zenml.enums import ModelStages

import steps.registry.check_new_data as module
from steps.registry.check_new_data import check_new_data

FILES = {"train/collection": "a" * 64, "train/queries": "b" * 64, "train/qrels": "c" * 64}


def _stage_version(client, model_name, name, stage, fingerprints=FILES):
    version = client.create_model_version(model_name, name)
    if fingerprints is not None:
        log_metadata({"data_fingerprints": fingerprints}, model_version_id=version.id)
    version.set_stage(stage)
    return version


def _metadata(client, version) -> dict:
    return client.get_model_version(model_version_name_or_number_or_id=version.id).run_metadata


def test_the_first_run_trains_and_names_its_run_and_version(step_context, model_name):
    context, recorded = step_context(module, model_name)
    check = check_new_data.entrypoint(FILES, "production")
    assert check["retrain"] and check["reason"] == "no production version yet: training"
    assert check["added"] == sorted(FILES) and check["changed"] == check["removed"] == []
    assert check["pipeline_run_id"] == str(context.pipeline_run.id)
    assert check["model_version_id"] == str(context.model_version.id)
    assert recorded == [{"data_check": {k: v for k, v in check.items() if k not in ("pipeline_run_id",
                                                                                      "model_version_id")}}]


def test_unchanged_data_trains_nothing_and_leaves_the_check_on_production(step_context, model_name, zenml_client):
    production = _stage_version(zenml_client, model_name, "prod", ModelStages.PRODUCTION)
    context, recorded = step_context(module, model_name)
    check = check_new_data.entrypoint(dict(FILES), "production")
    assert not check["retrain"]
    assert check["reason"] == "no new data since production version prod (all 3 files have the same sha256): " \
                              "nothing to train"
    last = _metadata(zenml_client, production)["last_data_check"]
    assert last["retrain"] is False and last["reason"] == check["reason"] and last["run"] == context.pipeline_run.name
    assert "last_data_check" not in _metadata(zenml_client, context.model_version)
    assert recorded[0]["data_check"]["retrain"] is False


def test_a_changed_added_and_removed_file_are_each_named(step_context, model_name, zenml_client):
    production = _stage_version(zenml_client, model_name, "prod", ModelStages.PRODUCTION)
    step_context(module, model_name)
    now = {"train/collection": "a" * 64, "train/queries": "d" * 64, "train/unlabeled": "e" * 64}
    check = check_new_data.entrypoint(now, "production")
    assert check["retrain"]
    assert (check["changed"], check["added"], check["removed"]) == (["train/queries"], ["train/unlabeled"],
                                                                    ["train/qrels"])
    assert check["reason"] == "new data since production version prod (1 changed, 1 added, 1 removed of 3 files): " \
                              "training"
    assert "last_data_check" not in _metadata(zenml_client, production)  # only a skipped run leaves one


def test_force_trains_on_unchanged_data(step_context, model_name, zenml_client):
    _stage_version(zenml_client, model_name, "prod", ModelStages.PRODUCTION)
    step_context(module, model_name)
    check = check_new_data.entrypoint(FILES, "production", force=True)
    assert check["retrain"] and "but force is set" in check["reason"]


def test_a_production_version_without_fingerprints_trains(step_context, model_name, zenml_client):
    _stage_version(zenml_client, model_name, "by_hand", ModelStages.PRODUCTION, fingerprints=None)
    step_context(module, model_name)
    check = check_new_data.entrypoint(FILES, "production")
    assert check["retrain"] and check["reason"] == "production version by_hand has no data fingerprints: training"


def test_another_stage_is_compared_when_asked(step_context, model_name, zenml_client):
    """Production saw other data; staging saw these files: against staging there is nothing new."""
    _stage_version(zenml_client, model_name, "prod", ModelStages.PRODUCTION, fingerprints={"old": "f" * 64})
    _stage_version(zenml_client, model_name, "reviewed", ModelStages.STAGING)
    step_context(module, model_name)
    assert check_new_data.entrypoint(FILES, "production")["retrain"]
    step_context(module, model_name, version="second")
    check = check_new_data.entrypoint(FILES, "staging")
    assert not check["retrain"]
    assert check["reason"] == "no new data since staging version reviewed (all 3 files have the same sha256): " \
                              "nothing to train"


def test_without_a_model_the_step_says_what_to_configure(step_context):
    step_context(module)
    with pytest.raises(ValueError, match="check_new_data needs a model: set `model: name: ...`"):
        check_new_data.entrypoint(FILES, "production")
