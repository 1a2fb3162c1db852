"""Ranking: BM25 first stage, hard-negative mining, cross-encoder training and reranking, IR metrics."""
