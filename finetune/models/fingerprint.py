"""Content fingerprints of model sources, so a step that loads a model is cached on the weights, not on the spec.

A spec names where a model comes from, and the same spec can point at different weights over time: a local folder
overwritten in place, a model package upgraded, a hub branch (``main``) that moved. Each source therefore gets a
string that changes exactly when the weights a load would read change:

- ``local``: sha256 over the folder's files (sorted relative names and bytes);
- ``package``: the package name, its installed version and the sha256 of its model folder;
- ``hub``: the commit the revision resolves to in the local Hugging Face cache (offline, never a hub call);
- ``gguf``: the sha256 of the ``.gguf`` file (a package upgrade that ships other weights changes it);
- tiny models built from a config: ``"config"``, as their parameters are already in the step's cache key.

A registered model version (``kind: registered``) is resolved to its version id by the step layer, which can ask the
model registry; nothing here imports ZenML.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Annotated

from pydantic import Field, TypeAdapter

from finetune.models.sources import packaged_model_path
from finetune.params import (
    GgufModel,
    HubModel,
    LocalModel,
    PackagedModel,
    TinyBertModel,
    TinyGpt2Model,
    TinyLlamaModel,
)
from finetune.training import fingerprint

LoadableSpec = Annotated[
    HubModel | LocalModel | PackagedModel | GgufModel | TinyBertModel | TinyGpt2Model | TinyLlamaModel,
    Field(discriminator="kind"),
]
_SPEC = TypeAdapter(LoadableSpec)


def fingerprint_model(spec: LoadableSpec | Mapping, cache_dir: str | Path | None = None) -> str:
    """A string that changes exactly when the weights ``spec`` loads change.

    Args:
        spec: A model spec, or its JSON dict (``{"kind": "local", "path": ...}``).
        cache_dir: Hugging Face hub cache for ``hub`` specs (default: ``HF_HUB_CACHE``, read when called).

    Raises:
        FileNotFoundError: A local path that does not exist.
        ValueError: A hub model whose revision is not in the local cache, or a package that is not installed.
    """
    if isinstance(spec, Mapping):
        spec = _SPEC.validate_python(spec)
    if isinstance(spec, LocalModel):
        return f"local sha256:{fingerprint(spec)}"
    if isinstance(spec, PackagedModel):
        folder = fingerprint(LocalModel(path=packaged_model_path(spec.package)))
        return f"package {spec.package}=={package_version(spec.package)} sha256:{folder}"
    if isinstance(spec, HubModel):
        return f"hub {spec.id}@{hub_commit(spec.id, spec.revision, cache_dir)}"
    if isinstance(spec, GgufModel):
        from finetune.models.gguf import gguf_file

        return f"gguf sha256:{fingerprint(gguf_file(spec))}"
    return "config"


def package_version(package: str) -> str:
    """Installed version of the distribution that provides module ``package`` (its ``__version__`` otherwise)."""
    for distribution in metadata.packages_distributions().get(package, []):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return str(getattr(importlib.import_module(package), "__version__", "unknown"))


def hub_commit(model_id: str, revision: str, cache_dir: str | Path | None = None) -> str:
    """The commit ``revision`` (a branch, tag or commit) of ``model_id`` resolves to in the local hub cache.

    Offline by design (``local_files_only``): the commit is the one a load would read now, and a missing model fails
    here with one line instead of deep inside a training step.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = Path(cache_dir or os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)
    try:
        snapshot = snapshot_download(model_id, revision=revision, cache_dir=cache, local_files_only=True)
    except LocalEntryNotFoundError:
        raise ValueError(f"hub model {model_id}@{revision} is not in the local Hugging Face cache ({cache}); "
                         f"download it first: hf download {model_id} --revision {revision}") from None
    return Path(snapshot).name
