"""A training run killed with SIGKILL resumes from its last checkpoint and ends where an uninterrupted run ends.

Each case runs ``resume_worker.py`` three times in fresh processes: once uninterrupted; once slowed down and killed
with SIGKILL as soon as its first complete checkpoint (a ``checkpoint-*`` folder with ``trainer_state.json``, which
the Trainer writes last) appears; and once more with the same command, which must find the checkpoint by its key.
Tolerance: none. On CPU the resumed run's saved weights are byte-identical to the uninterrupted run's (same sha256)
and its loss log and metric are equal as floats, because the Trainer restores the optimizer, scheduler, RNG states
and the data position, and our data, tokenizer and model initialisation are deterministic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("resume_worker.py")
ROOT = Path(__file__).resolve().parents[2]
STEPS, EVERY = 20, 5  # as in resume_worker.py


def _command(kind: str, work: Path, checkpoints: Path, out: Path) -> list[str]:
    return [sys.executable, str(WORKER), kind, str(work), str(checkpoints), str(out)]


def _env(**extra) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}


def _run(kind: str, work: Path, checkpoints: Path, out: Path) -> dict:
    done = subprocess.run(_command(kind, work, checkpoints, out), env=_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(out.read_text()), "stderr": done.stderr}


def _complete_checkpoints(root: Path) -> list[Path]:
    return [p for p in root.glob("*/*/checkpoint-*") if (p / "trainer_state.json").is_file()]


def _kill_after_first_checkpoint(kind: str, work: Path, checkpoints: Path, out: Path) -> None:
    # 0.3 s a micro-batch: the 5 steps to the next checkpoint take >= 1.5 s, far longer than one poll.
    process = subprocess.Popen(_command(kind, work, checkpoints, out), env=_env(RESUME_WORKER_STEP_DELAY="0.3"),
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not _complete_checkpoints(checkpoints):
            assert process.poll() is None, f"the worker ended before its first checkpoint:\n{process.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert not out.exists(), "the killed run must not have finished"


@pytest.mark.parametrize("kind", ["cross_encoder", "sft"])
def test_killed_run_resumes_and_ends_like_an_uninterrupted_run(kind, tmp_path):
    reference = _run(kind, tmp_path / "reference", tmp_path / "reference_checkpoints", tmp_path / "reference.json")
    assert reference["resumed_from_step"] == 0
    assert reference["micro_batches"] == STEPS
    assert not _complete_checkpoints(tmp_path / "reference_checkpoints"), "checkpoints are deleted after success"

    checkpoints = tmp_path / "checkpoints"
    _kill_after_first_checkpoint(kind, tmp_path / "killed", checkpoints, tmp_path / "killed.json")
    left = max(int(p.name.split("-")[1]) for p in _complete_checkpoints(checkpoints))
    assert left % EVERY == 0 and 0 < left < STEPS

    # The same command again, in a new work folder (a new ZenML run gets a new temporary folder too).
    resumed = _run(kind, tmp_path / "again", checkpoints, tmp_path / "again.json")
    assert resumed["resumed_from_step"] == left
    assert "resuming training from" in resumed["stderr"]
    assert resumed["micro_batches"] == STEPS - left, "finished steps must not be trained again"
    assert not _complete_checkpoints(checkpoints)

    assert resumed["weights_sha256"] == reference["weights_sha256"]
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["history"] == reference["history"]
