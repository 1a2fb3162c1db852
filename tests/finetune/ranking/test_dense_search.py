"""Chunked exact search equals brute force; the FAISS path (when installed) agrees with it."""

import pytest
import torch

from finetune.ranking.dense_search import exact_search, faiss_available, search


def _brute_force(queries, passages, k):
    scores = queries @ passages.T
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.gather(scores, 1, order), order


@pytest.mark.parametrize("chunk_size", [1, 7, 50, 1000])
def test_chunked_search_equals_brute_force(chunk_size):
    gen = torch.Generator().manual_seed(0)
    queries, passages = torch.randn(9, 16, generator=gen), torch.randn(50, 16, generator=gen)
    scores, index = exact_search(queries, passages, k=10, chunk_size=chunk_size)
    expected_scores, expected_index = _brute_force(queries, passages, 10)
    assert torch.equal(index, expected_index)
    assert torch.allclose(scores, expected_scores)


def test_ties_keep_the_lower_passage_index_across_chunks():
    """Passages 0, 3 and 5 are the same vector; with chunks of 2 they arrive in different chunks, best first."""
    passages = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    scores, index = exact_search(torch.tensor([[1.0, 0.0]]), passages, k=4, chunk_size=2)
    assert index.tolist() == [[0, 3, 5, 2]]
    assert scores.tolist() == [[1.0, 1.0, 1.0, 0.5]]


def test_k_is_capped_at_the_corpus_size_and_shapes_are_checked():
    scores, index = exact_search(torch.ones(2, 3), torch.eye(3), k=10, chunk_size=2)
    assert scores.shape == index.shape == (2, 3)
    with pytest.raises(ValueError, match="embedding shapes do not match"):
        exact_search(torch.ones(2, 3), torch.ones(4, 5), k=1)


def test_backend_choice():
    queries, passages = torch.randn(3, 4), torch.randn(20, 4)
    exact = exact_search(queries, passages, 5)
    assert torch.equal(search(queries, passages, 5, backend="exact")[1], exact[1])
    with pytest.raises(ValueError, match="unknown search backend"):
        search(queries, passages, 5, backend="annoy")
    if not faiss_available():
        assert torch.equal(search(queries, passages, 5, backend="auto")[1], exact[1])
        with pytest.raises(ValueError, match="faiss is not installed"):
            search(queries, passages, 5, backend="faiss")


def test_faiss_backend_agrees_with_exact_search():
    pytest.importorskip("faiss")
    gen = torch.Generator().manual_seed(1)
    queries, passages = torch.randn(5, 8, generator=gen), torch.randn(40, 8, generator=gen)
    scores, index = search(queries, passages, 6, backend="faiss")
    expected_scores, expected_index = exact_search(queries, passages, 6)
    assert torch.equal(index, expected_index)
    assert torch.allclose(scores, expected_scores, atol=1e-5)
