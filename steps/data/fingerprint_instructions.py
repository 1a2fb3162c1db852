from typing import Annotated

from zenml import step

from finetune.data.instructions import fingerprint_instructions as fingerprint
from finetune.params import InstructionDataParams
from steps.metadata import record
from steps.registry.stale_runs import claim_this_run


@step(enable_cache=False)
def fingerprint_instructions(data: InstructionDataParams) -> Annotated[dict[str, str], "source_fingerprints"]:
    """sha256 of the prompt/response file (written first for the demo); never cached, so edits are always seen.

    Downstream ``load_instructions`` is cached on this artifact's content, so unchanged bytes hit the cache.
    """
    claim_this_run()  # lets the next run tell this one from a killed one (steps/registry/stale_runs.py)
    digests = fingerprint(data)
    record({"fingerprints": digests})
    return digests
