"""Query likelihood: a causal language model scores a passage by how likely it makes the query.

The score of (query, passage) is the mean log-probability of the query's tokens after a prompt that shows the
passage and asks for a question about it (Sachan et al., "Improving Passage Retrieval with Zero-Shot Question
Generation", EMNLP 2022, UPR's prompt). No training and no judgments: any instruction-following causal LM is a
zero-shot reranker, and its signal is unlike a bi-encoder's (it reads every passage token against every query
token). Here it is a member of a teacher ensemble (``TeacherParams.ensemble``), whose fused scores a cross-encoder
learns on unlabeled or lightly judged queries.

Within one query the token count is the same for every passage, so mean and sum rank alike; the mean keeps
scores of different queries on one scale.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from finetune.device import InferencePrecision, resolve_device

PROMPT = "Passage: {passage}\nPlease write a question based on this passage.\nQuestion:"


def encode_pairs(tokenizer, queries: list[str], passages: list[str], max_passage_tokens: int
                 ) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, query ids) per pair. The passage is cut to its first ``max_passage_tokens`` tokens before the
    prompt is built, so the instruction after it survives; the query is `` {query}`` after ``Question:``. No
    special tokens are added (the probe that chose the prompt used none). Each distinct text is tokenized once."""
    prompt_ids: dict[str, list[int]] = {}
    query_ids: dict[str, list[int]] = {}
    pairs = []
    for query, passage in zip(queries, passages, strict=True):
        if passage not in prompt_ids:
            cut = tokenizer(passage, add_special_tokens=False)["input_ids"][:max_passage_tokens]
            text = PROMPT.format(passage=tokenizer.decode(cut))
            prompt_ids[passage] = tokenizer(text, add_special_tokens=False)["input_ids"]
        if query not in query_ids:
            query_ids[query] = tokenizer(" " + query.strip(), add_special_tokens=False)["input_ids"]
        if not query_ids[query]:
            raise ValueError(f"query {query!r} has no tokens; query likelihood cannot score it")
        pairs.append((prompt_ids[passage], query_ids[query]))
    return pairs


def score_query_likelihood(
    model_dir: str | Path, queries: list[str], passages: list[str], batch_size: int = 32,
    max_passage_tokens: int = 192, device: str = "auto", precision: InferencePrecision = "fp32",
) -> tuple[np.ndarray, float]:
    """Mean log P(query tokens | prompt(passage)) under the causal LM in ``model_dir``, for every pair.

    Pairs are scored longest-first in batches of similar length, right-padded and without an attention mask: a
    causal model never attends to later positions, so the padding after a sequence cannot change its scores, and
    the unmasked path is the fast one. Only the positions that predict query tokens go through the LM head.
    ``precision: bf16`` loads the weights in bfloat16 (on CPUs with AVX512-BF16 or AMX about 1.5× the fp32 speed;
    the log-softmax stays in fp32).

    Returns:
        (scores in the order of the pairs, seconds of scoring).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_device(device)  # type: ignore[arg-type]
    if precision == "fp16" and resolved != "cuda":
        raise ValueError("precision 'fp16' needs a GPU; use 'bf16' or 'fp32' on CPU")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(resolved).eval()
    encoded = encode_pairs(tokenizer, queries, passages, max_passage_tokens)
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    scores = np.zeros(len(encoded), dtype=np.float64)
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(order), batch_size):
            batch = order[first:first + batch_size]
            width = max(len(encoded[i][0]) + len(encoded[i][1]) for i in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            rows, positions, targets, owner = [], [], [], []
            for row, i in enumerate(batch):
                prompt, query = encoded[i]
                ids[row, :len(prompt) + len(query)] = torch.tensor(prompt + query)
                # position p predicts token p + 1: the query's tokens are predicted from len(prompt) - 1 on
                rows += [row] * len(query)
                positions += range(len(prompt) - 1, len(prompt) + len(query) - 1)
                targets += query
                owner += [row] * len(query)
            hidden = model.base_model(input_ids=ids.to(resolved)).last_hidden_state
            picked = hidden[torch.tensor(rows, device=hidden.device), torch.tensor(positions, device=hidden.device)]
            log_probs = torch.log_softmax(model.get_output_embeddings()(picked).float(), dim=-1)
            token_scores = log_probs[torch.arange(len(targets)), torch.tensor(targets, device=log_probs.device)]
            sums = torch.zeros(len(batch), dtype=torch.float64).index_add_(
                0, torch.tensor(owner), token_scores.double().cpu())
            counts = torch.bincount(torch.tensor(owner), minlength=len(batch)).double()
            scores[batch] = (sums / counts).numpy()
    return scores, time.perf_counter() - start
