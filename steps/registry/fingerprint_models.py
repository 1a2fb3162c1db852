from typing import Annotated

from zenml import step

from finetune.models.fingerprint import fingerprint_model
from steps.metadata import record
from steps.registry.model_versions import resolve_parents
from steps.registry.stale_runs import claim_this_run


@step(enable_cache=False)
def fingerprint_models(models: dict[str, dict]) -> Annotated[dict[str, str], "model_fingerprints"]:
    """Content fingerprint of every model by role (never cached: it looks at the weights and the registry, so a
    replaced model is always seen).

    ``models`` are specs as JSON dicts (``finetune.promotion.parent_specs``). The steps that load them take this
    artifact as an input, so unchanged weights hit the cache and changed ones re-run: a local folder or a package by
    its bytes, a hub revision by the commit it resolves to in the local cache, a registered version (``production``
    included) by the version id it resolves to now, a tiny model by its config; ``{"model": "teacher"}`` (a student
    starting from the teacher, whose weights arrive as an artifact) by that name.
    """
    claim_this_run()  # often a run's first step: lets the next run tell this one from a killed one
    fingerprints = {}
    for role, entry in resolve_parents(models).items():
        if entry.get("kind") == "registered":
            fingerprints[role] = f"registered {entry['name']} version {entry['version_id']}"
        elif "kind" in entry:
            fingerprints[role] = fingerprint_model(entry)
        else:
            fingerprints[role] = str(entry["model"])
    record({"model_fingerprints": fingerprints})
    return fingerprints
