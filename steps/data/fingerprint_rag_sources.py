from typing import Annotated

from zenml import step

from finetune.generation.rag import fingerprint_rag
from finetune.params import RagDataParams
from steps.metadata import record
from steps.registry.stale_runs import claim_this_run


@step(enable_cache=False)
def fingerprint_rag_sources(data: RagDataParams) -> Annotated[dict[str, str], "source_fingerprints"]:
    """sha256 of the corpus, queries, qrels and intents files (written first for the demo); never cached."""
    claim_this_run()  # lets the next run tell this one from a killed one (steps/registry/stale_runs.py)
    digests = fingerprint_rag(data)
    record({"fingerprints": digests})
    return digests
