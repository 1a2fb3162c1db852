from typing import Annotated

from zenml import step

from finetune.data.preferences import fingerprint_preferences as fingerprint
from finetune.params import PreferenceDataParams
from steps.metadata import record
from steps.registry.stale_runs import claim_this_run


@step(enable_cache=False)
def fingerprint_preferences(data: PreferenceDataParams) -> Annotated[dict[str, str], "source_fingerprints"]:
    """sha256 of the preference file (written first for the demo); never cached, so edits are always seen."""
    claim_this_run()  # lets the next run tell this one from a killed one (steps/registry/stale_runs.py)
    digests = fingerprint(data)
    record({"fingerprints": digests})
    return digests
