from typing import Annotated

from zenml import step

from finetune.data.ranking import fingerprint_sources as fingerprint
from finetune.params import RankingDataParams
from steps.metadata import record
from steps.registry.stale_runs import claim_this_run


@step(enable_cache=False)
def fingerprint_sources(data: RankingDataParams) -> Annotated[dict[str, str], "source_fingerprints"]:
    """sha256 of every input file (never cached: it looks at the files, so edits are always seen).

    Downstream ``load_msmarco`` is cached on this artifact's content, so unchanged bytes hit the cache.
    """
    claim_this_run()  # lets the next run tell this one from a killed one (steps/registry/stale_runs.py)
    digests = fingerprint(data)
    record({"fingerprints": digests})
    return digests
