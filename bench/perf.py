"""Shared plumbing of the performance benchmarks (``make bench``): the machine line, alternating repetitions,
min/median summaries and the result files that ``bench.write_benchmarks`` splices into BENCHMARKS.md.

Each performance benchmark times our code and the peer library in one process, alternating the two so that a
background load hits both alike, and writes ``bench/results/perf_<name>.json`` (raw numbers) and
``bench/results/perf_<name>.md`` (its BENCHMARKS.md section, starting with a ``## `` heading).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    """One line naming the hardware and software the numbers were taken on."""
    import torch

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    threads = torch.get_num_threads()
    return (f"{os.cpu_count()} CPU cores ({cpu}), {threads} torch threads, {gpu}, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def alternate(candidates: dict[str, Callable[[], object]], repetitions: int = 3, warmup: bool = True
              ) -> dict[str, list[float]]:
    """Time each callable ``repetitions`` times, interleaved (A B A B ...), after one untimed warm-up call each.

    Returns:
        Seconds per repetition, by name.
    """
    if warmup:
        for fn in candidates.values():
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repetitions):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def summary(values: list[float]) -> dict[str, float]:
    """min, median and max of a list of repetitions."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def rate_summary(work: float, seconds: list[float]) -> dict[str, float]:
    """Throughput (``work`` units per second) per repetition: best (from the min time) and median."""
    return {"best": work / min(seconds), "median": work / statistics.median(seconds), "n": len(seconds)}


def write_result(name: str, data: dict, markdown: str) -> Path:
    """Write ``perf_<name>.json`` (with the machine and date added) and the ``perf_<name>.md`` section."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **data}
    (RESULTS / f"perf_{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    path = RESULTS / f"perf_{name}.md"
    path.write_text(markdown.strip() + "\n")
    return path
