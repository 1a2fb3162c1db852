"""One seeded run of a pipeline's core path, in its own process, for tests/reliability/test_determinism.py.

``python tests/reliability/determinism_worker.py <ranking|generation> <workdir> <result.json>``

The result holds a sha256 of every stage's output, so a difference names the first stage that differs, and the
final metrics. ``ranking``: generated MS MARCO files → loaders and seeded split → BM25 → hard-negative mining → a
cross-encoder trained from a checkpoint without a classifier (its head is created at load time) → reranking → ranx.
``generation``: generated instructions → seeded split → SFT of a saved tiny Llama-style model with LoRA (its A
matrices are drawn when the adapter is added) → held-out perplexity, greedy generations, ROUGE and BLEU. Before
training, the random state is scrambled from the OS, as a step finds it after whatever ran before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _sha(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _scramble_random_state() -> None:
    """Leave torch, NumPy and Python in an arbitrary random state, as a pipeline step finds them after other steps."""
    import random

    import numpy as np
    import torch

    seed = random.SystemRandom().randrange(2**32)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def headless_tiny_bert(work: Path, texts: list[str]) -> Path:
    """A tiny BERT saved without its classifier, as a bi-encoder checkpoint such as all-MiniLM-L6-v2 is."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from finetune.models.sources import build_tiny_bert
    from finetune.params import TinyBertModel

    full = build_tiny_bert(TinyBertModel(vocab_size=300), work / "tiny", texts)
    headless = work / "headless"
    BertForSequenceClassification.from_pretrained(full).bert.save_pretrained(headless)
    AutoTokenizer.from_pretrained(full).save_pretrained(headless)
    return headless


def ranking(work: Path) -> dict:
    from finetune.data.demo import write_demo_msmarco
    from finetune.data.ranking import load_ranking_data
    from finetune.params import (
        CheckpointParams,
        CrossEncoderParams,
        LocalModel,
        MiningParams,
        MsMarcoFiles,
        RankingDataParams,
        RetrievalParams,
        TrainingParams,
    )
    from finetune.ranking.cross_encoder import mine_hard_negatives, rerank, train_cross_encoder
    from finetune.ranking.first_stage import first_stage_runs
    from finetune.ranking.metrics import evaluate_run

    files = write_demo_msmarco(work / "data", num_queries=24, passages_per_query=12, seed=3)
    stages = {"files": {k: _file_sha(v) for k, v in sorted(files.items())}}
    data = RankingDataParams(train=MsMarcoFiles(**{k: files[k] for k in ("collection", "queries", "qrels")}),
                             eval_fraction=0.25, split_seed=1)
    train_set, eval_set = load_ranking_data(data)
    stages["split"] = _sha([list(train_set.queries), list(eval_set.queries), train_set.qrels, eval_set.qrels])
    train_run, eval_run = first_stage_runs(train_set, eval_set, RetrievalParams(k=12))
    stages["bm25"] = _sha([train_run.scores, eval_run.scores])
    pairs = mine_hard_negatives(train_set, train_run.scores, MiningParams(negatives_per_positive=3, depth=12))
    stages["pairs"] = _sha(pairs.to_dict("records"))
    base = headless_tiny_bert(work, pairs["query"].drop_duplicates().tolist() + pairs["passage"].unique().tolist())
    stages["base"] = {p.name: _file_sha(p) for p in sorted(base.iterdir())}
    _scramble_random_state()
    training = TrainingParams(max_steps=12, per_device_batch_size=8, learning_rate=1e-3, max_length=64,
                              logging_steps=1, device="cpu", precision="fp32",
                              checkpoints=CheckpointParams(every_steps=None))
    result = train_cross_encoder(pairs, CrossEncoderParams(model=LocalModel(path=base), training=training),
                                 work / "train")
    stages["losses"] = [e["loss"] for e in result.log_history]
    stages["weights"] = _file_sha(result.model_dir / "model.safetensors")
    reranked = rerank(result.model_dir, eval_set, eval_run.scores, depth=12, device="cpu", max_length=64)
    stages["rerank"] = _sha(reranked.run)
    metrics = evaluate_run(eval_set.qrels, reranked.run, ["ndcg@10", "mrr@10", "map@12"], relevance_level=2)
    return {"stages": stages, "metrics": metrics}


def generation(work: Path) -> dict:
    from finetune.data.instructions import load_instruction_data
    from finetune.generation.evaluation import evaluate_generation, perplexity, prompts_and_references
    from finetune.generation.training import train_sft
    from finetune.models.causal import build_tiny_causal_lm, load_causal_lm
    from finetune.params import (
        CheckpointParams,
        DemoInstructions,
        GenerationEvalParams,
        GenerationTrainingParams,
        InstructionDataParams,
        LocalModel,
        LoraMethod,
        SftParams,
        TinyLlamaModel,
    )

    data = InstructionDataParams(source=DemoInstructions(output_dir=work / "data", num_examples=80),
                                 template="Q: {prompt}\nA:", validation_fraction=0.1, test_fraction=0.1)
    train, validation, test = load_instruction_data(data)
    stages = {"split": _sha([train.to_dict("records"), validation.to_dict("records"), test.to_dict("records")])}
    training = GenerationTrainingParams(max_steps=15, per_device_batch_size=4, learning_rate=1e-2, max_length=64,
                                        logging_steps=1, eval_steps=5, device="cpu", precision="fp32",
                                        checkpoints=CheckpointParams(every_steps=None))
    # A saved base model, as the pipeline's prepare step hands it to training, then an arbitrary random state.
    base = build_tiny_causal_lm(TinyLlamaModel(), work / "base", train["prompt"].tolist() + train["response"].tolist())
    stages["base"] = {p.name: _file_sha(p) for p in sorted(base.iterdir()) if p.is_file()}
    _scramble_random_state()
    params = SftParams(model=LocalModel(path=base), method=LoraMethod(r=4), training=training)
    result = train_sft(train, validation, data.template, params, work / "train")
    stages["losses"] = [e["loss"] for e in result.log_history if "loss" in e]
    stages["weights"] = _file_sha(result.model_dir / "model.safetensors")
    model, tokenizer = load_causal_lm(result.model_dir, device="cpu")
    prompts, references = prompts_and_references(test, data.template, tokenizer)
    metrics, rows = evaluate_generation(model, tokenizer, prompts, references,
                                        GenerationEvalParams(max_new_tokens=12, num_samples=3, device="cpu"), "test")
    stages["generations"] = _sha(rows)
    texts = [p + r for p, r in zip(prompts, references, strict=True)]
    metrics["test_perplexity"] = perplexity(model, texts, tokenizer, 32, 32, 8).perplexity
    metrics["validation_loss"] = result.stats["validation_loss"]
    return {"stages": stages, "metrics": metrics}


if __name__ == "__main__":
    kind, work, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out.write_text(json.dumps({"ranking": ranking, "generation": generation}[kind](work)))
