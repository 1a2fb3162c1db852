"""One training run through the library, in its own process, for tests/reliability/test_resume.py.

``python tests/reliability/resume_worker.py <cross_encoder|sft> <workdir> <checkpoint_root> <result.json>``

It trains a tiny model on generated data with a checkpoint every 5 of 20 optimizer steps and writes a JSON result:
the step it resumed from, how many micro-batches this process trained (``Trainer.training_step`` calls, counted
by a wrapper), the sha256 of the saved weights, the loss log and a metric of the saved model. With
``RESUME_WORKER_STEP_DELAY`` set, every micro-batch sleeps that many seconds, so the test can kill the process
between two checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STEPS, EVERY = 20, 5


def _count_training_steps() -> dict:
    from transformers import Trainer

    counter = {"micro_batches": 0}
    original = Trainer.training_step
    delay = float(os.environ.get("RESUME_WORKER_STEP_DELAY", "0"))

    def training_step(self, *args, **kwargs):
        counter["micro_batches"] += 1
        if delay:
            time.sleep(delay)
        return original(self, *args, **kwargs)

    Trainer.training_step = training_step
    return counter


def _training(root: Path, **extra):
    from finetune.params import CheckpointParams

    return dict(max_steps=STEPS, learning_rate=1e-3, logging_steps=1, device="cpu", precision="fp32",
                checkpoints=CheckpointParams(every_steps=EVERY, root=root, save_total_limit=2), **extra)


def cross_encoder(work: Path, root: Path) -> tuple[Path, int, list[dict], dict]:
    from finetune.data.demo import write_demo_msmarco
    from finetune.data.ranking import load_ranking_data
    from finetune.params import (
        CrossEncoderParams,
        MiningParams,
        MsMarcoFiles,
        RankingDataParams,
        RetrievalParams,
        TinyBertModel,
        TrainingParams,
    )
    from finetune.ranking.cross_encoder import mine_hard_negatives, rerank, train_cross_encoder
    from finetune.ranking.first_stage import first_stage_runs
    from finetune.ranking.metrics import evaluate_run

    files = write_demo_msmarco(work / "data", num_queries=24, passages_per_query=12, seed=3)
    data = RankingDataParams(train=MsMarcoFiles(**{k: files[k] for k in ("collection", "queries", "qrels")}),
                             eval_fraction=0.25, split_seed=1)
    train_set, eval_set = load_ranking_data(data)
    train_run, eval_run = first_stage_runs(train_set, eval_set, RetrievalParams(k=12))
    pairs = mine_hard_negatives(train_set, train_run.scores, MiningParams(negatives_per_positive=3, depth=12))
    params = CrossEncoderParams(model=TinyBertModel(vocab_size=300),
                                training=TrainingParams(**_training(root, per_device_batch_size=8, max_length=64)))
    result = train_cross_encoder(pairs, params, work / "train")
    reranked = rerank(result.model_dir, eval_set, eval_run.scores, depth=12, device="cpu", max_length=64)
    metrics = evaluate_run(eval_set.qrels, reranked.run, ["ndcg@10"], relevance_level=2)
    return result.model_dir, result.resumed_from_step, result.log_history, metrics


def sft(work: Path, root: Path) -> tuple[Path, int, list[dict], dict]:
    from finetune.data.instructions import load_instruction_data
    from finetune.generation.training import train_sft
    from finetune.params import (
        DemoInstructions,
        FullFineTuning,
        GenerationTrainingParams,
        InstructionDataParams,
        SftParams,
        TinyLlamaModel,
    )

    data = InstructionDataParams(source=DemoInstructions(output_dir=work / "data", num_examples=60),
                                 template="Q: {prompt}\nA:", validation_fraction=0.2, test_fraction=0.1)
    train, validation, _ = load_instruction_data(data)
    params = SftParams(model=TinyLlamaModel(), method=FullFineTuning(),
                       training=GenerationTrainingParams(**_training(root, per_device_batch_size=4, max_length=64,
                                                                     eval_steps=5, per_device_eval_batch_size=8)))
    result = train_sft(train, validation, data.template, params, work / "train")
    keys = ("step", "loss", "eval_loss", "grad_norm", "learning_rate")  # not the timings of the evaluation entries
    history = [{k: e[k] for k in keys if k in e} for e in result.log_history if "loss" in e or "eval_loss" in e]
    return (result.model_dir, result.stats["resumed_from_step"], history,
            {"validation_loss": result.stats["validation_loss"]})


def main() -> None:
    kind, work, root, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    counter = _count_training_steps()
    model_dir, resumed, history, metrics = {"cross_encoder": cross_encoder, "sft": sft}[kind](work, root)
    weights = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    out.write_text(json.dumps({"resumed_from_step": resumed, "micro_batches": counter["micro_batches"],
                               "weights_sha256": weights, "history": history, "metrics": metrics}))


if __name__ == "__main__":
    main()
