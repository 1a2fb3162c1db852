"""GPU: reranking docs/s by precision and batch size vs ``CrossEncoder.predict``, and cross-encoder training
pairs/s in bf16 vs fp32, with all-MiniLM-L6-v2 on one CUDA device.

Reranking: the TREC DL 2019 BM25 top-100 pairs of all 43 queries (~4,300; the demo MS MARCO texts when
../shared/evaldata is absent, which the result says), the packaged all-MiniLM-L6-v2 as a CrossEncoder with a
seeded one-logit head, max_length 256. The peer is ``CrossEncoder.predict`` at batch sizes 32, 128 and 256 (its
best counts); ours is ``score_pairs`` (what ``rerank`` runs) in fp32 (TF32 matmuls, as ``resolve_placement``
sets them), bf16 and fp16 at batch sizes 64, 256 and 512. Each setting: one warm-up call, then ``--repetitions``
timed calls (CUDA synchronised), best and median docs/s; scores are compared with ours in fp32 (max abs diff).
Targets (issue 20): ≥ 20,000 docs/s in bf16/fp16, ≥ 5× the peer's best, scores within 1e-2 of fp32.

Training: ``train_cross_encoder`` (the ``train_cross_encoder`` step's path) on ``--groups`` mined DL19 groups
(as ``bench.perf_cross_encoder_training`` prepares them; needs ../shared/evaldata) for one epoch, batch 32,
precision fp32 and bf16 on CUDA; pairs/s from its ``train_seconds``; each model then reranks the BM25 top-30
of the 22 held-out queries for nDCG@10 and a paired t-test between the two. Target: ≥ 1,500 pairs/s in bf16 at
equal held-out quality.

Without CUDA it prints one line and exits 0, writing a results section that says so unless the results already
hold a GPU measurement. Run: ``python -m bench.perf_gpu_ranking [--repetitions 3 --groups 400]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import perf
from bench.perf import machine, write_result

MAX_LENGTH = 256
PEER_BATCHES = (32, 128, 256)
OUR_BATCHES = (64, 256, 512)
PRECISIONS = ("fp32", "bf16", "fp16")
DOCS_TARGET, PEER_RATIO_TARGET, DIFF_TARGET, TRAIN_TARGET = 20_000, 5.0, 1e-2, 1_500
TITLE = "## GPU reranking and cross-encoder training (`python -m bench.perf_gpu_ranking`)"


def timed(fn, repetitions: int) -> list[float]:
    """Seconds of ``repetitions`` calls after one warm-up call, the device synchronised around each."""
    fn()
    seconds = []
    for _ in range(repetitions):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def rate(n: int, seconds: list[float]) -> dict:
    return {"best": n / min(seconds), "median": n / statistics.median(seconds)}


def reranking(repetitions: int) -> dict:
    from bench.profile_phases import bench_pairs, build_model
    from finetune.device import resolve_placement
    from finetune.ranking.cross_encoder import score_pairs

    resolve_placement("cuda", "auto")  # TF32 for the fp32 runs, as rerank() does
    pairs, source = bench_pairs(limit=10_000)
    model = build_model("cuda", MAX_LENGTH)
    results = {}
    for batch in PEER_BATCHES:
        seconds = timed(lambda b=batch: model.predict(pairs, batch_size=b, show_progress_bar=False), repetitions)
        results[f"peer_{batch}"] = {"path": "peer", "precision": "fp32", "batch": batch, **rate(len(pairs), seconds)}
    reference = score_pairs(model, pairs, 256)
    for precision in PRECISIONS:
        for batch in OUR_BATCHES:
            seconds = timed(lambda b=batch, p=precision: score_pairs(model, pairs, b, p), repetitions)
            scored = score_pairs(model, pairs, batch, precision)
            results[f"ours_{precision}_{batch}"] = {
                "path": "ours", "precision": precision, "batch": batch, **rate(len(pairs), seconds),
                "max_abs_diff_vs_fp32": float(np.abs(scored - reference).max())}
    peer_best = max(r["best"] for r in results.values() if r["path"] == "peer")
    half = [r for r in results.values() if r["path"] == "ours" and r["precision"] != "fp32"]
    best_half = max(half, key=lambda r: r["best"])
    return {"pairs": len(pairs), "source": source, "runs": results, "peer_best": peer_best,
            "best_half": best_half, "ratio_vs_peer_best": best_half["best"] / peer_best,
            "met": {"docs_per_second": best_half["best"] >= DOCS_TARGET,
                    "vs_peer": best_half["best"] / peer_best >= PEER_RATIO_TARGET,
                    "scores": all(r["max_abs_diff_vs_fp32"] <= DIFF_TARGET for r in half)}}


def training(groups: int) -> dict:
    from bench.perf_cross_encoder_training import DL19, load_data
    from finetune.params import CheckpointParams, CrossEncoderParams, PackagedModel, TrainingParams
    from finetune.ranking.cross_encoder import rerank, top_candidates, train_cross_encoder
    from finetune.ranking.metrics import compare_runs

    if not (DL19 / "collection.tsv").is_file():
        return {"run": False, "why": f"{DL19} not found (training needs the DL19 files)"}
    pairs, eval_set, eval_run = load_data(groups)
    out: dict = {"run": True, "pairs": len(pairs), "groups": int(pairs["group"].nunique())}
    runs = {"bm25": {q: {p: eval_run[q][p] for p in top_candidates(eval_run, q, 30)} for q in eval_run}}
    with tempfile.TemporaryDirectory(prefix="perf_gpu_ranking_") as scratch:
        for precision in ("fp32", "bf16"):
            training_params = TrainingParams(epochs=1, per_device_batch_size=32, learning_rate=1e-4,
                                             warmup_ratio=0.1, max_length=MAX_LENGTH, seed=42, logging_steps=50,
                                             device="cuda", precision=precision,
                                             checkpoints=CheckpointParams(every_steps=None))
            torch.cuda.reset_peak_memory_stats()
            result = train_cross_encoder(pairs, CrossEncoderParams(model=PackagedModel(), training=training_params),
                                         Path(scratch) / precision)
            out[precision] = {"train_seconds": result.train_seconds,
                              "pairs_per_second": result.train_examples / result.train_seconds,
                              "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20, "device": result.device}
            runs[precision] = rerank(result.model_dir, eval_set, eval_run, depth=30, batch_size=256,
                                     device="cuda", max_length=MAX_LENGTH).run
    comparison = compare_runs(eval_set.qrels, runs, ["ndcg@10"], "fp32", relevance_level=2)
    out["ndcg@10"] = {name: comparison.means[name]["ndcg@10"] for name in runs}
    out["p_value_bf16_vs_fp32"] = comparison.p_values["bf16"]["ndcg@10"]
    out["met"] = out["bf16"]["pairs_per_second"] >= TRAIN_TARGET
    return out


def markdown(data: dict) -> str:
    rr, tr = data["reranking"], data["training"]
    lines = [TITLE, "", f"**Machine:** {data['machine']} ({data['date']})", "",
             f"Reranking {rr['pairs']:,} pairs ({rr['source']}), all-MiniLM-L6-v2 cross-encoder, max_length "
             f"{MAX_LENGTH}, {data['repetitions']} timed repetitions after a warm-up.", "",
             "| path | precision | batch | docs/s best | docs/s median | max abs diff vs our fp32 |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rr["runs"].values():
        diff = f"{r['max_abs_diff_vs_fp32']:.1e}" if "max_abs_diff_vs_fp32" in r else "—"
        label = "`CrossEncoder.predict`" if r["path"] == "peer" else "`score_pairs`"
        lines.append(f"| {label} | {r['precision']} | {r['batch']} | {r['best']:,.0f} | {r['median']:,.0f} | {diff} |")
    best = rr["best_half"]
    lines += ["", f"Best half precision: {best['precision']} at batch {best['batch']}, {best['best']:,.0f} docs/s "
              f"(target ≥ {DOCS_TARGET:,}: **{'met' if rr['met']['docs_per_second'] else 'missed'}**), "
              f"{rr['ratio_vs_peer_best']:.1f}× the peer's best (target ≥ {PEER_RATIO_TARGET:g}×: "
              f"**{'met' if rr['met']['vs_peer'] else 'missed'}**); scores within {DIFF_TARGET:g} of fp32: "
              f"**{'met' if rr['met']['scores'] else 'missed'}**.", ""]
    if not tr["run"]:
        lines.append(f"Cross-encoder training: not measured ({tr['why']}).")
    else:
        lines += [f"Cross-encoder training, {tr['pairs']:,} DL19 pairs ({tr['groups']} groups), one epoch, batch 32:",
                  "", "| precision | pairs/s | peak MiB | held-out nDCG@10 |", "|---|---:|---:|---:|"]
        lines += [f"| {p} | {tr[p]['pairs_per_second']:,.0f} | {tr[p]['peak_memory_mb']:,.0f} | "
                  f"{tr['ndcg@10'][p]:.4f} |" for p in ("fp32", "bf16")]
        lines += ["", f"BM25 nDCG@10 {tr['ndcg@10']['bm25']:.4f}; bf16 vs fp32 paired t-test p = "
                  f"{tr['p_value_bf16_vs_fp32']:.3f}. Target ≥ {TRAIN_TARGET:,} pairs/s in bf16: "
                  f"**{'met' if tr['met'] else 'missed'}**."]
    return "\n".join(lines)


def not_run_here() -> int:
    print("perf_gpu_ranking: no CUDA GPU on this machine; not run (it needs one)")
    previous = perf.RESULTS / "perf_gpu_ranking.json"
    if previous.is_file() and json.loads(previous.read_text()).get("cuda"):
        return 0
    text = (f"{TITLE}\n\n**Machine:** {machine()}\n\nNot run here: this machine has no CUDA GPU. On one, the "
            "benchmark measures reranking docs/s of all-MiniLM-L6-v2 in fp32/bf16/fp16 at several batch sizes "
            f"against `CrossEncoder.predict` (targets ≥ {DOCS_TARGET:,} docs/s, ≥ {PEER_RATIO_TARGET:g}× the peer, "
            f"scores within {DIFF_TARGET:g} of fp32) and cross-encoder training pairs/s in bf16 vs fp32 (target "
            f"≥ {TRAIN_TARGET:,} pairs/s at equal held-out nDCG@10). No numbers are reported without a measurement.")
    write_result("gpu_ranking", {"cuda": False, "run": False}, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--groups", type=int, default=400)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        return not_run_here()
    from datetime import UTC, datetime

    data = {"cuda": True, "gpu": torch.cuda.get_device_name(0), "machine": machine(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "repetitions": args.repetitions,
            "reranking": reranking(args.repetitions),
            "training": {"run": False, "why": "--skip-training"} if args.skip_training else training(args.groups)}
    path = write_result("gpu_ranking", data, markdown(data))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
