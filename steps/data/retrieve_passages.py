from typing import Annotated

import pandas as pd
from zenml import step

from finetune.generation.rag import rag_examples, recall_at_k, retrieve
from finetune.models.directory import ModelDirectory
from finetune.params import RagParams
from steps.metadata import record


@step
def retrieve_passages(
    corpus: pd.DataFrame,
    train_queries: pd.DataFrame,
    test_queries: pd.DataFrame,
    rag: RagParams,
    retriever_model_dir: ModelDirectory | None = None,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> tuple[
    Annotated[pd.DataFrame, "train_examples"],
    Annotated[pd.DataFrame, "test_examples"],
    Annotated[dict[str, float], "retrieval_metrics"],
]:
    """Top-k passages per query (BM25, or the dual encoder in ``retriever_model_dir``), rendered into the generator's
    prompts; ``<split>_recall@<k>`` of the supporting passages for the train and test queries."""
    passages = dict(zip(corpus["pid"], corpus["passage"], strict=True))
    retriever, k = rag.retriever, rag.retriever.k
    metrics, examples = {}, {}
    for split, queries in (("train", train_queries), ("test", test_queries)):
        path = None if retriever_model_dir is None else retriever_model_dir.path
        retrieved = retrieve(passages, dict(zip(queries["qid"], queries["query"], strict=True)), retriever, path,
                             rag.device)
        supporting = dict(zip(queries["qid"], queries["supporting"], strict=True))
        metrics[f"{split}_recall@{k}"] = recall_at_k(retrieved, supporting, k)
        examples[split] = rag_examples(queries, retrieved, passages, rag.prompt_template, retriever.passage_chars)
    record(metrics)
    return examples["train"], examples["test"], metrics
