"""Exact top-k search of query embeddings over passage embeddings, chunked so memory stays bounded.

The score matrix of 43 queries × 8.8M MS MARCO passages would be 1.5 GB of float32; scoring ``chunk_size``
passages at a time and merging each chunk's top-k into a running top-k keeps memory at
queries × (chunk_size + k) floats whatever the corpus size. FAISS (``IndexFlatIP``, also exact) is used when it is
installed and asked for; it is not a dependency.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch


def faiss_available() -> bool:
    """Whether the optional ``faiss`` package can be imported."""
    return importlib.util.find_spec("faiss") is not None


def exact_search(
    queries: torch.Tensor, passages: torch.Tensor, k: int, chunk_size: int = 65_536
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` passages per query by inner product, scoring ``chunk_size`` passages per matrix product.

    Pass normalised embeddings for cosine similarity. Ties keep the lower passage index first (a stable merge),
    so the result equals a full ``queries @ passages.T`` followed by a stable descending sort.

    Args:
        queries: (num_queries, dim) embeddings.
        passages: (num_passages, dim) embeddings.
        k: Results per query (capped at the number of passages).
        chunk_size: Passages scored per matrix product.

    Returns:
        (scores, indices), both (num_queries, min(k, num_passages)), best first.
    """
    if queries.ndim != 2 or passages.ndim != 2 or queries.shape[1] != passages.shape[1]:
        raise ValueError(f"embedding shapes do not match: queries {tuple(queries.shape)}, "
                         f"passages {tuple(passages.shape)}")
    k = min(k, passages.shape[0])
    best_scores = queries.new_empty((queries.shape[0], 0))
    best_index = torch.empty((queries.shape[0], 0), dtype=torch.long, device=queries.device)
    for start in range(0, passages.shape[0], chunk_size):
        chunk = queries @ passages[start : start + chunk_size].T
        index = torch.arange(start, start + chunk.shape[1], device=queries.device).expand(queries.shape[0], -1)
        # Earlier candidates come first in the concatenation, so a stable sort keeps the lower index on ties.
        scores = torch.cat([best_scores, chunk], dim=1)
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        best_scores = torch.gather(scores, 1, order)
        best_index = torch.gather(torch.cat([best_index, index], dim=1), 1, order)
    return best_scores, best_index


def faiss_search(queries: torch.Tensor, passages: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same exact inner-product search with a FAISS ``IndexFlatIP`` (requires ``faiss``)."""
    import faiss

    index = faiss.IndexFlatIP(passages.shape[1])
    index.add(np.ascontiguousarray(passages.float().cpu().numpy()))
    scores, ids = index.search(np.ascontiguousarray(queries.float().cpu().numpy()), min(k, passages.shape[0]))
    return torch.from_numpy(scores), torch.from_numpy(ids).long()


def search(
    queries: torch.Tensor, passages: torch.Tensor, k: int, chunk_size: int = 65_536, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` search with the chosen backend (``auto``: faiss when installed, else chunked torch).

    Raises:
        ValueError: ``faiss`` was asked for but is not installed, or the backend is unknown.
    """
    if backend not in ("auto", "exact", "faiss"):
        raise ValueError(f"unknown search backend {backend!r}; use 'auto', 'exact' or 'faiss'")
    if backend == "faiss" and not faiss_available():
        raise ValueError("dense.backend is 'faiss' but faiss is not installed (pip install faiss-cpu)")
    if backend == "faiss" or (backend == "auto" and faiss_available()):
        return faiss_search(queries, passages, k)
    return exact_search(queries, passages, k, chunk_size)
