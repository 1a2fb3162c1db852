"""Data scale: ingest + BM25 index of synthetic MS MARCO-format collections of 100 k to 3 M passages.

Each collection is generated once into a cache folder (``$FINETUNE_BENCH_CACHE``, default ``.cache/bench``) in
the official formats: ``collection.tsv``, ``queries.tsv``, ``qrels.txt`` and a TREC run file. Passages draw their
words from the word frequencies of the TREC DL 2019 passages in ../shared/evaldata (4,297 real MS MARCO
passages), their lengths from the same passages' length distribution rescaled to the full collection's mean of
about 56 words, and 2 % of their tokens from a Zipf-distributed tail of rare words, so that the vocabulary keeps
growing with the collection as a real one does (Heaps' law) instead of saturating at the sample's ~30 k words.

Every measurement runs in a fresh subprocess and takes the path the pipelines take: ``load_ranking_data`` (the
strict MS MARCO readers, fingerprinting every byte, then the seeded train/eval split) and a ``BM25Index`` over the
collection (bm25s, Lucene scoring, English stemming and stopwords), then retrieves the top 100 for 100 queries.
Peak RSS comes from ``getrusage``; the baseline RSS after the imports is subtracted to get bytes per passage.
Sizes alternate (100 k, 300 k, 1 M, 3 M, 100 k, ...) so that background load hits them alike. The projection to
the full collection (8,841,823 passages) extends the line through the two largest sizes, where the fixed costs
(chunk buffers, the vocabulary) no longer weigh on the slope, and is held against issue 19's 8 GiB.

Run: ``python -m bench.perf_data_scale [--repetitions 2]`` (needs ../shared/evaldata; the 3 M collection takes
~1.1 GB of disk and a few minutes to generate, once).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bench.perf import machine, summary, write_result

SIZES = (100_000, 300_000, 1_000_000, 3_000_000)
FULL_COLLECTION = 8_841_823  # passages in MS MARCO passage v1 collection.tsv
MEMORY_LIMIT_GIB = 8  # issue 19: ingest + BM25 index of the full collection within 8 GiB peak RSS
DL19 = Path(__file__).resolve().parents[1].parent / "shared" / "evaldata" / "msmarco-passage" / "trec-dl19"
CACHE = Path(os.environ.get("FINETUNE_BENCH_CACHE", Path(__file__).resolve().parents[1] / ".cache" / "bench"))
GENERATOR_VERSION = 1
SEED = 0
MEAN_WORDS = 56.0  # mean words per passage of the full collection (the DL19 top-100 sample averages 62.6)
RARE_FRACTION = 0.02  # share of tokens drawn from the open-ended rare-word tail
QUERIES_PER_PASSAGE = 0.01  # 1 M passages -> 10,000 queries, each with one judged passage and a top-100 run
RUN_DEPTH = 100
RETRIEVED_QUERIES = 100  # BM25 top-100 is retrieved for this many training queries, whatever the size
CHUNK = 50_000  # passages generated per batch; every size is a multiple of it


def _word_model(collection: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words, their probabilities and the passage lengths (in words) of a real MS MARCO sample."""
    counts: Counter[str] = Counter()
    lengths = []
    with open(collection, encoding="utf-8") as f:
        for line in f:
            words = line.rstrip("\n").split("\t", 1)[1].split()
            counts.update(words)
            lengths.append(len(words))
    words = np.array(list(counts), dtype=object)
    probs = np.array(list(counts.values()), dtype=np.float64)
    return words, probs / probs.sum(), np.array(lengths)


def _passages(rng: np.random.Generator, n: int, words: np.ndarray, probs: np.ndarray, lengths: np.ndarray
              ) -> list[list[str]]:
    scale = MEAN_WORDS / lengths.mean()
    sizes = np.maximum(1, np.rint(rng.choice(lengths, size=n) * scale).astype(np.int64))
    tokens = words[rng.choice(len(words), size=int(sizes.sum()), p=probs)]
    rare = rng.random(len(tokens)) < RARE_FRACTION
    tokens[rare] = [f"zq{np.base_repr(int(r), 36).lower()}" for r in rng.zipf(1.3, size=int(rare.sum()))]
    ends = np.cumsum(sizes)
    flat = tokens.tolist()
    return [flat[end - size:end] for end, size in zip(ends.tolist(), sizes.tolist(), strict=True)]


def generate(root: Path, sizes: tuple[int, ...] = SIZES, seed: int = SEED) -> dict[int, Path]:
    """Write one MS MARCO-format folder per size under ``root`` (reused when already complete).

    The smaller collections are prefixes of the largest, and their queries those whose judged passage lies in
    the prefix; each size gets its own run file, whose 99 non-relevant candidates are drawn from its collection.

    Returns:
        size -> folder holding collection.tsv, queries.tsv, qrels.txt and run.trec.
    """
    folders = {n: root / f"{n // 1000}k" for n in sizes}
    stamp = root / "meta.json"
    meta = {"version": GENERATOR_VERSION, "seed": seed, "sizes": list(sizes)}
    if stamp.exists() and json.loads(stamp.read_text()) == meta:
        return folders
    words, probs, lengths = _word_model(DL19 / "collection.tsv")
    rng = np.random.default_rng(seed)
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    collections = {n: open(folders[n] / "collection.tsv", "w", encoding="utf-8", newline="\n") for n in sizes}
    queries: list[tuple[int, str]] = []  # (judged pid, query text), in pid order
    try:
        for start in range(0, max(sizes), CHUNK):
            passages = _passages(rng, CHUNK, words, probs, lengths)
            text = "".join(f"{start + i}\t{' '.join(p)}\n" for i, p in enumerate(passages))
            for n, f in collections.items():
                if start < n:
                    f.write(text)
            for i in np.flatnonzero(rng.random(CHUNK) < QUERIES_PER_PASSAGE).tolist():
                picked = rng.choice(len(passages[i]), size=min(len(passages[i]), int(rng.integers(2, 7))),
                                    replace=False)
                queries.append((start + i, " ".join(passages[i][j] for j in sorted(picked.tolist()))))
    finally:
        for f in collections.values():
            f.close()
    for n, folder in folders.items():
        judged = [(qid, pid, text) for qid, (pid, text) in enumerate(queries) if pid < n]
        (folder / "queries.tsv").write_text("".join(f"{qid}\t{text}\n" for qid, _, text in judged))
        (folder / "qrels.txt").write_text("".join(f"{qid} 0 {pid} 1\n" for qid, pid, _ in judged))
        run_rng = np.random.default_rng([seed, n])
        with open(folder / "run.trec", "w", encoding="utf-8", newline="\n") as f:
            for qid, pid, _ in judged:
                others = run_rng.choice(n, size=RUN_DEPTH + 1, replace=False).tolist()
                ranked = [p for p in others if p != pid][: RUN_DEPTH - 1]
                ranked.insert(int(run_rng.integers(0, 10)), pid)
                f.write("".join(f"{qid} Q0 {p} {r} {30.0 - 0.1 * r:.4f} synthetic\n"
                                for r, p in enumerate(ranked, start=1)))
    stamp.write_text(json.dumps(meta))
    return folders


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(folder: Path) -> dict[str, float]:
    """Ingest + index one folder in this process (the child side of :func:`run_child`).

    Returns:
        Seconds and peak RSS after each phase, passage and vocabulary counts.
    """
    from finetune.data.ranking import load_ranking_data
    from finetune.params import MsMarcoFiles, RankingDataParams, RetrievalParams
    from finetune.ranking.bm25 import BM25Index

    retrieval = RetrievalParams()
    params = RankingDataParams(train=MsMarcoFiles(
        collection=folder / "collection.tsv", queries=folder / "queries.tsv", qrels=folder / "qrels.txt",
        run=folder / "run.trec"))
    baseline = _peak_rss_bytes()
    clock = [(time.perf_counter(), time.process_time())]
    train_set, _ = load_ranking_data(params)
    clock.append((time.perf_counter(), time.process_time()))
    rss_loaded = _peak_rss_bytes()
    index = BM25Index(train_set.corpus, k1=retrieval.k1, b=retrieval.b, stemmer=retrieval.stemmer)
    clock.append((time.perf_counter(), time.process_time()))
    rss_indexed = _peak_rss_bytes()
    queries = dict(list(train_set.queries.items())[:RETRIEVED_QUERIES])
    run = index.retrieve(queries, k=retrieval.k)
    clock.append((time.perf_counter(), time.process_time()))
    out = {
        "passages": len(train_set.corpus),
        "vocabulary": len(index._tokenizer.get_vocab_dict()),
        "retrieved_candidates": sum(len(v) for v in run.values()),
        "baseline_rss": baseline,
        "peak_rss_after_load": rss_loaded,
        "peak_rss": max(rss_indexed, _peak_rss_bytes()),
    }
    for phase, before, after in zip(("load", "index", "retrieve"), clock, clock[1:], strict=False):
        out[f"{phase}_seconds"] = after[0] - before[0]
        out[f"{phase}_cpu_seconds"] = after[1] - before[1]
    return out


def run_child(folder: Path) -> dict[str, float]:
    """:func:`measure` in a fresh Python process, so each size starts from an empty heap."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "bench.perf_data_scale", "--measure", str(folder)],
                         check=True, capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _secant(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """The line ``y = a + b x`` through the last two points: (a, b)."""
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return ys[-1] - slope * xs[-1], slope


def report(results: dict[int, list[dict[str, float]]], note: str) -> tuple[dict, str]:
    """Summaries, growth ratios and the projection to the full collection; the BENCHMARKS.md section.

    Growth and projection use CPU seconds (``time.process_time``): the code is single-threaded, so on an idle
    machine wall time equals CPU time, while on a shared one only the wall time is inflated by the load.
    """
    rows = {}
    for n, reps in sorted(results.items()):
        cpu = [r["load_cpu_seconds"] + r["index_cpu_seconds"] for r in reps]
        net = statistics.median(r["peak_rss"] - r["baseline_rss"] for r in reps)
        rows[n] = {
            "ingest_index_cpu_seconds": summary(cpu),
            "ingest_index_wall_seconds": summary([r["load_seconds"] + r["index_seconds"] for r in reps]),
            **{f"{phase}_{kind}seconds": summary([r[f"{phase}_{kind}seconds"] for r in reps])
               for phase in ("load", "index", "retrieve") for kind in ("", "cpu_")},
            "peak_rss_bytes": statistics.median(r["peak_rss"] for r in reps),
            "peak_rss_after_load_bytes": statistics.median(r["peak_rss_after_load"] for r in reps),
            "net_peak_rss_bytes": net,
            "baseline_rss_bytes": statistics.median(r["baseline_rss"] for r in reps),
            "vocabulary": reps[0]["vocabulary"],
            "cpu_us_per_passage": 1e6 * statistics.median(cpu) / n,
            "net_bytes_per_passage": net / n,
        }
    sizes = sorted(rows)
    small, large = sizes[0], sizes[-1]
    time_fit = _secant(sizes, [rows[n]["ingest_index_cpu_seconds"]["median"] for n in sizes])
    mem_fit = _secant(sizes, [rows[n]["net_peak_rss_bytes"] for n in sizes])
    baseline = statistics.median(rows[n]["baseline_rss_bytes"] for n in sizes)
    projected_seconds = time_fit[0] + time_fit[1] * FULL_COLLECTION
    projected_bytes = baseline + mem_fit[0] + mem_fit[1] * FULL_COLLECTION

    def ratios(a: int, b: int) -> dict[str, float]:
        return {
            "size_ratio": b / a,
            "cpu_time_ratio": (rows[b]["ingest_index_cpu_seconds"]["median"]
                               / rows[a]["ingest_index_cpu_seconds"]["median"]),
            "wall_time_ratio": (rows[b]["ingest_index_wall_seconds"]["median"]
                                / rows[a]["ingest_index_wall_seconds"]["median"]),
            "memory_ratio": rows[b]["net_peak_rss_bytes"] / rows[a]["net_peak_rss_bytes"],
        }

    growth, top = ratios(small, large), ratios(sizes[-2], large)
    # "Linear": growing the collection ×k may cost at most ×1.25k in CPU time and in net peak memory, over the
    # whole range and between the two largest sizes.
    linear_time = all(g["cpu_time_ratio"] <= 1.25 * g["size_ratio"] for g in (growth, top))
    bounded_memory = all(g["memory_ratio"] <= 1.25 * g["size_ratio"] for g in (growth, top))
    fits = projected_bytes <= MEMORY_LIMIT_GIB * 2**30
    met = linear_time and bounded_memory and fits
    data = {"rows": {str(n): r for n, r in rows.items()}, "growth": growth, "growth_largest": top,
            "projection": {"passages": FULL_COLLECTION, "cpu_seconds": projected_seconds,
                           "peak_rss_bytes": projected_bytes, "cpu_seconds_line": time_fit,
                           "net_rss_bytes_line": mem_fit, "through_sizes": sizes[-2:]},
            "memory_limit_gib": MEMORY_LIMIT_GIB, "linear_time": linear_time, "bounded_memory": bounded_memory,
            f"fits_in_{MEMORY_LIMIT_GIB}_gib": fits, "met": met, "note": note}
    gib, mib = 2**30, 2**20
    table = "\n".join(
        f"| {n:,} | {r['vocabulary']:,} | {r['load_cpu_seconds']['median']:.1f} | "
        f"{r['index_cpu_seconds']['median']:.1f} | {r['ingest_index_cpu_seconds']['min']:.1f} / "
        f"{r['ingest_index_cpu_seconds']['median']:.1f} | {r['ingest_index_wall_seconds']['median']:.1f} | "
        f"{r['cpu_us_per_passage']:.1f} | {r['peak_rss_after_load_bytes'] / mib:,.0f} | "
        f"{r['peak_rss_bytes'] / mib:,.0f} | {r['net_bytes_per_passage']:,.0f} | "
        f"{1000 * r['retrieve_cpu_seconds']['median'] / RETRIEVED_QUERIES:.1f} |"
        for n, r in rows.items())
    reps = min(len(v) for v in results.values())
    markdown = f"""## Data scale: ingest + BM25 index, {small // 1000:,} k to {large / 1e6:g} M passages \
(`python -m bench.perf_data_scale`)

**Machine**: {machine()}. {note}

**Setup.** Synthetic collections in the official MS MARCO formats ({", ".join(f"{n:,}" for n in sizes)} passages;
words and lengths from the 4,297 real TREC DL19 passages, mean {MEAN_WORDS:.0f} words, 2 % of tokens from an
open-ended rare-word tail so the vocabulary grows with the collection; 1 query with one judgment and a top-100 run
per 100 passages). Each size is loaded by `load_ranking_data` (strict readers, sha256 of every byte, seeded
split; the collection becomes a `Collection`: pids and byte offsets in numpy arrays, texts left in the file) and
indexed by `BM25Index` (bm25s, Lucene BM25, English stemmer and stopwords; (term, tf) pairs counted chunk by
chunk, then written straight into bm25s's CSC arrays) in a fresh process, sizes interleaved, {reps}
repetition{"s" if reps > 1 else ""} each (medians shown). Times are CPU seconds of that process
(single-threaded, so equal to wall time on an idle machine; the wall column shows what the background load made
of them); peak RSS from `getrusage` (after loading, and overall), less the {baseline / mib:,.0f} MiB the process
holds after its imports for the bytes per passage.

| passages | vocabulary | load CPU s | index CPU s | load + index CPU s (min / median) | wall s | CPU µs / passage \
| peak RSS after load MiB | peak RSS MiB | net bytes / passage | retrieve CPU ms / query |
|---|---|---|---|---|---|---|---|---|---|---|
{table}

Growth from {small:,} to {large:,} passages (×{growth['size_ratio']:.0f}): CPU time ×{growth['cpu_time_ratio']:.2f}
(wall ×{growth['wall_time_ratio']:.2f}), net peak memory ×{growth['memory_ratio']:.2f}; from {sizes[-2]:,} to
{large:,} (×{top['size_ratio']:.0f}): CPU ×{top['cpu_time_ratio']:.2f}, net peak memory ×{top['memory_ratio']:.2f}.
The line through the two largest sizes costs {time_fit[1] * 1e6:.1f} µs of CPU and {mem_fit[1]:,.0f} bytes of peak
RSS per extra passage; extended to the full {FULL_COLLECTION:,}-passage collection it gives
**{projected_seconds / 60:.1f} min** of CPU and **{projected_bytes / gib:.1f} GiB** peak RSS.

**Target** (issue 19): linear time and the full collection within {MEMORY_LIMIT_GIB} GiB peak RSS — time
{"linear" if linear_time else "NOT linear"} (each growth within 25 % of its size ratio), memory per passage
{"bounded" if bounded_memory else "GROWING"}, projection {"within" if fits else "OVER"} {MEMORY_LIMIT_GIB} GiB:
**{"met" if met else "missed"}**.
"""
    return data, markdown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--note", default="", help="one sentence on the conditions (e.g. background load)")
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure)))
        return 0
    if not (DL19 / "collection.tsv").exists():
        print(f"perf_data_scale: {DL19 / 'collection.tsv'} is missing (../shared/evaldata); nothing measured",
              file=sys.stderr)
        return 1
    start = time.perf_counter()
    folders = generate(CACHE / "data_scale", tuple(sorted(args.sizes)))
    print(f"data ready in {time.perf_counter() - start:.0f} s under {CACHE / 'data_scale'}", flush=True)
    results: dict[int, list[dict[str, float]]] = {n: [] for n in folders}
    for _ in range(args.repetitions):
        for n, folder in folders.items():
            results[n].append(run_child(folder))
            r = results[n][-1]
            print(f"{n:>9,} passages: load {r['load_cpu_seconds']:.1f} s CPU ({r['load_seconds']:.1f} wall), "
                  f"index {r['index_cpu_seconds']:.1f} s CPU ({r['index_seconds']:.1f} wall), "
                  f"peak RSS {r['peak_rss'] / 2**20:,.0f} MiB", flush=True)
    load = os.getloadavg()[0]
    note = args.note or f"Load average {load:.1f} at the end of the run."
    data, markdown = report(results, note)
    data["raw"] = {str(n): v for n, v in results.items()}
    print(write_result("data_scale", data, markdown).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
