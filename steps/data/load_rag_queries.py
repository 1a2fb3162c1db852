from typing import Annotated

import pandas as pd
from zenml import step

from finetune.generation.rag import load_rag_data
from finetune.params import RagDataParams
from steps.metadata import record


@step
def load_rag_queries(
    data: RagDataParams, source_fingerprints: dict[str, str]
) -> tuple[
    Annotated[pd.DataFrame, "corpus"],
    Annotated[pd.DataFrame, "train_queries"],
    Annotated[pd.DataFrame, "test_queries"],
]:
    """Corpus (``pid``, ``passage``) and queries with reference intents and supporting pids, split by a seeded
    shuffle. ``source_fingerprints`` is an input only so the cache key follows the bytes on disk."""
    corpus, train, test = load_rag_data(data)
    record({"passages": len(corpus), "queries": {"train": len(train), "test": len(test)},
            "fingerprints": source_fingerprints})
    return pd.DataFrame({"pid": list(corpus), "passage": list(corpus.values())}), train, test
