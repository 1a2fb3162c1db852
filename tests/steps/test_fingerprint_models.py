"""fingerprint_models: every model role gets its content fingerprint; a registered stage by the version it points at."""

import uuid

from zenml.enums import ModelStages

from finetune.models.sources import build_tiny_bert
from finetune.params import LocalModel, RegisteredModel, TinyBertModel
from finetune.promotion import parent_specs
from steps.registry.fingerprint_models import fingerprint_models

TEXTS = ["what is the capital of france", "paris is the capital city of france"] * 5


def test_roles_get_their_own_fingerprints_and_production_moving_changes_the_registered_one(tmp_path, zenml_client):
    name = f"fingerprinted_{uuid.uuid4().hex[:8]}"
    zenml_client.create_model(name)
    first = zenml_client.create_model_version(name, "one")
    first.set_stage(ModelStages.PRODUCTION)
    local = build_tiny_bert(TinyBertModel(vocab_size=100, hidden_size=16), tmp_path / "local", TEXTS)
    models = parent_specs({"teacher": RegisteredModel(name=name), "student_base": "teacher",
                           "base_model": LocalModel(path=local), "encoder": TinyBertModel(), "absent": None})

    before = fingerprint_models.entrypoint(models)
    assert set(before) == {"teacher", "student_base", "base_model", "encoder"}
    assert before["teacher"] == f"registered {name} version {first.id}"
    assert before["student_base"] == "teacher" and before["encoder"] == "config"
    assert before["base_model"].startswith("local sha256:")

    second = zenml_client.create_model_version(name, "two")
    second.set_stage(ModelStages.PRODUCTION, force=True)
    after = fingerprint_models.entrypoint(models)
    assert after["teacher"] == f"registered {name} version {second.id}"
    assert {k: v for k, v in after.items() if k != "teacher"} == {k: v for k, v in before.items() if k != "teacher"}
