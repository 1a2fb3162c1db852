"""Retrieval-augmented intent generation: retrieve passages for a query, prompt with them, generate the intent.

Retrieval is BM25 (``finetune.ranking.bm25``) or a dual encoder (``finetune.ranking.dual_encoder`` with the exact
search of ``finetune.ranking.dense_search``). The generator is a local causal LM fine-tuned on (query + retrieved
passages) → intent examples with the SFT code of ``finetune.generation.training``, or an OpenAI-compatible HTTP
endpoint (``POST {base_url}/chat/completions``). The endpoint's API key is an argument of the functions that
send it and is never logged, returned or written anywhere.
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from finetune.data.msmarco import read_collection, read_qrels, read_queries, sha256_file
from finetune.data.rag_demo import write_demo_rag
from finetune.data.types import DataFormatError
from finetune.params import DemoRag, HttpGenerator, RagDataParams, RagFiles, RagRetrieverParams

logger = logging.getLogger(__name__)

QUERY_COLUMNS = ["qid", "query", "intent", "supporting"]


def read_intents(path: str | Path) -> dict[str, str]:
    """``qid<TAB>intent`` lines → ``{qid: intent}``, the intent stripped of surrounding whitespace.

    Lines end at ``\n`` only (a ``\r`` before it goes with the stripping): ``str.splitlines`` would also end them
    at characters such as U+0085 or U+2028 inside an intent.

    Raises:
        DataFormatError: ``<path>: not UTF-8 text (byte 0x.. at offset N)``, or ``<path>:<line>: ...`` for a line
            without exactly one tab, an empty intent or a repeated qid.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})") from None
    intents: dict[str, str] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip():
            raise DataFormatError(f"{path}:{lineno}: expected 'qid<TAB>intent'")
        if parts[0] in intents:
            raise DataFormatError(f"{path}:{lineno}: query {parts[0]} has a second intent")
        intents[parts[0]] = parts[1].strip()
    return intents


def rag_files(params: RagDataParams) -> RagFiles:
    """The files to read: the configured ones, or the demo set written first."""
    source = params.source
    if isinstance(source, DemoRag):
        paths = write_demo_rag(source.output_dir, source.num_queries, source.passages_per_query, source.seed)
        return RagFiles(collection=paths["collection"], queries=paths["queries"], qrels=paths["qrels"],
                        intents=paths["intents"])
    return source


def fingerprint_rag(params: RagDataParams) -> dict[str, str]:
    """sha256 of the four files (the demo set is written first)."""
    files = rag_files(params)
    expected = ("the collection TSV file", "the queries TSV file", "the TREC qrels file", "the intents TSV file")
    paths = (files.collection, files.queries, files.qrels, files.intents)
    return {str(p): sha256_file(p, what) for p, what in zip(paths, expected, strict=True)}


def load_rag_data(params: RagDataParams) -> tuple[Mapping[str, str], pd.DataFrame, pd.DataFrame]:
    """Corpus and the queries with intents, split into train and test queries.

    Returns:
        ``(corpus pid → text, train, test)``; the frames have ``qid``, ``query``, ``intent`` and ``supporting``
        (the pids judged at ``supporting_grade`` or above, sorted).

    Raises:
        DataFormatError: A query without an intent.
    """
    files = rag_files(params)
    corpus, queries = read_collection(files.collection), read_queries(files.queries)
    qrels, intents = read_qrels(files.qrels), read_intents(files.intents)
    missing = [qid for qid in queries if qid not in intents]
    if missing:
        raise DataFormatError(f"{files.intents}: no intent for queries {missing[:5]}")
    rows = [{"qid": qid, "query": text, "intent": intents[qid],
             "supporting": sorted(p for p, g in qrels.get(qid, {}).items() if g >= params.supporting_grade)}
            for qid, text in queries.items()]
    frame = pd.DataFrame(rows, columns=QUERY_COLUMNS)
    if params.max_queries is not None:
        frame = frame.iloc[: params.max_queries]
    order = list(range(len(frame)))
    random.Random(params.split_seed).shuffle(order)
    n_test = max(1, round(len(frame) * params.test_fraction))
    test = frame.iloc[sorted(order[:n_test])].reset_index(drop=True)
    train = frame.iloc[sorted(order[n_test:])].reset_index(drop=True)
    return corpus, train, test


def retrieve(corpus: Mapping[str, str], queries: Mapping[str, str], params: RagRetrieverParams,
             dense_model_dir: str | Path | None = None, device: str = "auto") -> dict[str, list[str]]:
    """Top-``k`` pids per query, best first, by BM25 or by the dual encoder saved in ``dense_model_dir``."""
    if params.kind == "bm25":
        from finetune.ranking.bm25 import bm25_retrieve

        run = bm25_retrieve(dict(corpus), dict(queries), k=params.k, k1=params.k1, b=params.b,
                            stemmer=params.stemmer)
        return {qid: [pid for pid, _ in sorted(run.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))]
                for qid in queries}
    if dense_model_dir is None:
        raise ValueError("a dual_encoder retriever needs its model directory")
    from finetune.ranking.dense_search import exact_search
    from finetune.ranking.dual_encoder import encode, load_dual_encoder

    model = load_dual_encoder(dense_model_dir, device)
    pids, qids = list(corpus), list(queries)
    passages = encode(model, [corpus[p] for p in pids], "document", params.batch_size)
    query_vectors = encode(model, [queries[q] for q in qids], "query", params.batch_size)
    _, indices = exact_search(query_vectors, passages, min(params.k, len(pids)))
    return {qid: [pids[i] for i in row] for qid, row in zip(qids, indices.tolist(), strict=True)}


def recall_at_k(retrieved: Mapping[str, Sequence[str]], supporting: Mapping[str, Sequence[str]], k: int) -> float:
    """Mean over queries with supporting passages of |supporting ∩ top-k| / |supporting| (others are skipped)."""
    # len(), not truthiness: after a round trip through parquet the pid lists are numpy arrays.
    values = [len(set(retrieved.get(qid, [])[:k]) & set(pids)) / len(pids)
              for qid, pids in supporting.items() if len(pids)]
    if not values:
        raise ValueError("no query has a supporting passage: recall is undefined")
    return sum(values) / len(values)


def build_prompt(template: str, query: str, passages: Sequence[str], passage_chars: int) -> str:
    """The generator's prompt: numbered passages (each cut to ``passage_chars``) and the query."""
    numbered = "\n".join(f"[{i}] {text[:passage_chars]}" for i, text in enumerate(passages, start=1))
    return template.format(query=query, passages=numbered)


def rag_examples(frame: pd.DataFrame, retrieved: Mapping[str, Sequence[str]], corpus: Mapping[str, str],
                 template: str, passage_chars: int) -> pd.DataFrame:
    """Instruction examples (``finetune.data.instructions.EXAMPLE_COLUMNS``): prompt = query with its passages,
    response = the reference intent; the SFT trainer and the generation evaluation read this layout."""
    prompts = [build_prompt(template, q, [corpus[p] for p in retrieved[qid]], passage_chars)
               for qid, q in zip(frame["qid"], frame["query"], strict=True)]
    messages = [json.dumps([{"role": "user", "content": p}, {"role": "assistant", "content": i}])
                for p, i in zip(prompts, frame["intent"], strict=True)]
    return pd.DataFrame({"id": frame["qid"].tolist(), "prompt": prompts, "response": frame["intent"].tolist(),
                         "messages": messages})


def chat_completion(base_url: str, model: str, messages: list[dict[str, str]], api_key: str | None,
                    max_tokens: int, timeout_s: float = 60.0, max_retries: int = 2) -> str:
    """One ``POST {base_url}/chat/completions`` (OpenAI-compatible) with temperature 0; returns the reply text.

    Connection errors, 429 and 5xx are retried ``max_retries`` times with 1 s, 2 s, ... back-off.

    Raises:
        RuntimeError: A 4xx other than 429, retries exhausted, or a body without ``choices[0].message.content``;
            the message names the URL and status, never the key.
    """
    url = base_url.rstrip("/") + "/chat/completions"
    body = json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    for attempt in range(max_retries + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                payload = json.loads(response.read())
            break
        except urllib.error.HTTPError as error:
            retry = error.code == 429 or error.code >= 500
            if not retry or attempt == max_retries:
                raise RuntimeError(f"POST {url}: HTTP {error.code}") from None
        except urllib.error.URLError as error:
            if attempt == max_retries:
                raise RuntimeError(f"POST {url}: {error.reason}") from None
        time.sleep(1.0 + attempt)
    try:
        return str(payload["choices"][0]["message"]["content"]).strip()
    except (KeyError, IndexError, TypeError):
        raise RuntimeError(f"POST {url}: the reply has no choices[0].message.content") from None


def generate_http(prompts: Sequence[str], generator: HttpGenerator, api_key: str | None,
                  max_new_tokens: int) -> list[str]:
    """The endpoint's reply to every prompt (sent as the user turn after the configured system prompt)."""
    replies = []
    for prompt in prompts:
        messages = [{"role": "system", "content": generator.system_prompt}, {"role": "user", "content": prompt}]
        replies.append(chat_completion(generator.base_url, generator.model, messages, api_key, max_new_tokens,
                                       generator.timeout_s, generator.max_retries))
    logger.info("%d replies from %s", len(replies), generator.base_url)
    return replies


def api_key_from_env(generator: HttpGenerator) -> str | None:
    """The key from ``api_key_env`` outside ZenML (None when unset in the config)."""
    import os

    if generator.api_key_env is None:
        return None
    if generator.api_key_env not in os.environ:
        raise ValueError(f"generator.api_key_env: environment variable {generator.api_key_env} is not set")
    return os.environ[generator.api_key_env]


def generate_local(model_dir: str | Path, prompts: Sequence[str], template: str, max_new_tokens: int,
                   batch_size: int = 8, device: str = "cpu") -> list[str]:
    """Greedy intents from a fine-tuned causal LM; each prompt is rendered with the training ``template`` (a text
    template, or ``chat``: the tokenizer's chat template with the prompt as the user turn, as training renders it)."""
    from finetune.data.instructions import render_example
    from finetune.generation.evaluation import generate_responses
    from finetune.models.causal import load_causal_lm

    model, tokenizer = load_causal_lm(model_dir, device=device)
    if template == "chat":
        rendered = [render_example([{"role": "user", "content": p}, {"role": "assistant", "content": ""}], "chat",
                                   tokenizer)[0] for p in prompts]
    else:
        rendered = [template.format(prompt=p) for p in prompts]
    return [r.strip() for r in generate_responses(model, tokenizer, rendered, max_new_tokens, batch_size,
                                                  stop=("\n",))]

