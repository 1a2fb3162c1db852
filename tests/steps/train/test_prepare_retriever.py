"""prepare_retriever through ``.entrypoint()``: a dual-encoder spec becomes a sentence-transformers directory."""

import pandas as pd
import pytest

import steps.train.prepare_retriever as module
from finetune.params import RagRetrieverParams
from steps.train.prepare_retriever import prepare_retriever

CORPUS = pd.DataFrame({"pid": ["10", "11"], "passage": ["paris is the capital city of france",
                                                        "france exports wine and cheese"]})
QUERIES = pd.DataFrame({"qid": ["1"], "query": ["capital of france"]})


def test_a_tiny_bert_spec_is_saved_as_a_bi_encoder_that_embeds(monkeypatch):
    from sentence_transformers import SentenceTransformer

    recorded = []
    monkeypatch.setattr(module, "record", recorded.append)
    retriever = RagRetrieverParams(kind="dual_encoder", model={"kind": "tiny_bert", "vocab_size": 100,
                                                               "hidden_size": 16})
    model_dir = prepare_retriever.entrypoint(retriever, CORPUS, QUERIES)
    assert model_dir.kind == "dual_encoder" and model_dir.base_model.startswith("dual_encoder ")
    assert recorded == [{"retriever": model_dir.base_model, "num_parameters": model_dir.num_parameters}]
    encoder = SentenceTransformer(str(model_dir.path), device="cpu")
    assert sum(p.numel() for p in encoder.parameters()) == model_dir.num_parameters
    assert encoder.encode(["capital of france"]).shape == (1, 16)  # hidden size 16


@pytest.mark.parametrize("model", [None, {"kind": "registered", "name": "retriever"}])
def test_only_a_model_spec_is_materialised(model):
    with pytest.raises(ValueError, match="retriever.model: this step materialises a model spec"):
        prepare_retriever.entrypoint(RagRetrieverParams(model=model), CORPUS, QUERIES)
