from typing import Annotated

from zenml import step

from finetune.data.arc import fingerprint_multiple_choice as fingerprint
from finetune.params import MultipleChoiceDataParams
from steps.metadata import record
from steps.registry.stale_runs import claim_this_run


@step(enable_cache=False)
def fingerprint_multiple_choice(mc_data: MultipleChoiceDataParams) -> Annotated[dict[str, str], "mc_fingerprints"]:
    """sha256 of the question files (never cached: it looks at the files, so edits are always seen).

    Downstream ``load_multiple_choice`` is cached on this artifact's content, so unchanged bytes hit the cache.
    """
    claim_this_run()  # lets the next run tell this one from a killed one (steps/registry/stale_runs.py)
    digests = fingerprint(mc_data)
    record({"mc_fingerprints": digests})
    return digests
