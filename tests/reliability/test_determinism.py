"""Two runs with the same seeds, in separate processes with different ``PYTHONHASHSEED``, give identical results.

``PYTHONHASHSEED`` changes the iteration order of every set of strings (and of dicts built from them), so a stage
that depends on such an order shows up here. Each run also starts from the process's own unseeded torch state.
Two causes of run-to-run differences were found this way and fixed at the source:

- tokenizers' ``WordPieceTrainer`` numbers the ``##`` continuation pieces in Rust hash-map order and breaks merge
  ties by those numbers, so the tiny BERT's vocabulary differed between processes
  (``finetune.models.sources.train_wordpiece_tokenizer`` now trains deterministically);
- a cross-encoder built on a checkpoint without a classifier (all-MiniLM-L6-v2 is one) drew its new head before the
  Trainer seeded anything, so every run started from a different head (``finetune.training.seed_before_building``).
  The reward model's new head was drawn the same way, and so were LoRA's A matrices on a saved base model (a tiny
  model built in the same call had just seeded torch, which hid it in the demos).

Every stage is compared by sha256 (a failure names the first stage that differs) and the metrics must be equal as
floats: no tolerance. This holds on one CPU with a fixed thread count; other thread counts or a GPU may reduce
floats in another order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("determinism_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _two_runs(kind: str, tmp_path: Path) -> tuple[dict, dict]:
    processes = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
               "PYTHONHASHSEED": hash_seed}
        out = tmp_path / f"{kind}_{hash_seed}.json"
        command = [sys.executable, str(WORKER), kind, str(tmp_path / f"work_{hash_seed}"), str(out)]
        processes.append((subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, text=True), out))
    results = []
    for process, out in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        results.append(json.loads(out.read_text()))
    return results[0], results[1]


def _assert_identical(first: dict, second: dict) -> None:
    for stage, value in first["stages"].items():
        assert second["stages"][stage] == value, f"stage '{stage}' differs between the two processes"
    assert first["metrics"] == second["metrics"]


def test_ranking_core_path_is_deterministic(tmp_path):
    first, second = _two_runs("ranking", tmp_path)
    _assert_identical(first, second)
    assert len(first["stages"]["losses"]) == 12
    assert 0.0 < first["metrics"]["ndcg@10"] <= 1.0


def test_generation_core_path_is_deterministic(tmp_path):
    first, second = _two_runs("generation", tmp_path)
    _assert_identical(first, second)
    assert len(first["stages"]["losses"]) == 15
    assert first["metrics"]["test_perplexity"] > 1.0
