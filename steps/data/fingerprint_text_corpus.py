from typing import Annotated

from zenml import step

from finetune.data.text import fingerprint_text
from finetune.params import TextDataParams
from steps.metadata import record
from steps.registry.stale_runs import claim_this_run


@step(enable_cache=False)
def fingerprint_text_corpus(data: TextDataParams) -> Annotated[dict[str, str], "source_fingerprints"]:
    """sha256 of every text file (written first for the demo); never cached, so edits are always seen."""
    claim_this_run()  # lets the next run tell this one from a killed one (steps/registry/stale_runs.py)
    digests = fingerprint_text(data)
    record({"fingerprints": digests})
    return digests
