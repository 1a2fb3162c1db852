"""bench/gpu_suite.sh fails fast, with one plain line, where there is no GPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SUITE = Path(__file__).resolve().parents[2] / "bench" / "gpu_suite.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the suite would run")
def test_without_cuda_the_suite_stops_before_running_anything(tmp_path):
    done = subprocess.run(["bash", str(SUITE)], env={**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"gpu_suite: no CUDA GPU visible to {sys.executable} (torch.cuda.is_available() is False, or torch is "
        "missing); nothing run"]
    assert not any(tmp_path.iterdir())  # nothing written


def test_every_bench_the_suite_runs_exists():
    text = SUITE.read_text()
    for module in ("bench.perf_gpu_mfu", "bench.perf_gpu_ranking", "bench.profile_phases"):
        assert module in text
        assert (SUITE.parent / f"{module.split('.')[1]}.py").is_file()
    assert "-m gpu" in text
