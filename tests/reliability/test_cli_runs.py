"""The documented command, ``zenml pipeline run pipelines.<module>.<name> -c <file>``, in a real child process.

- A run config with a misplaced section or a misspelled nested key stops the command before anything runs: exit
  status 2, our one-line message on stderr, no run and no model version in the store.
- A run killed with SIGKILL (the whole process group, during training) stays ``running`` with an unstaged model
  version until the next run's first step or ``python -m cli.cleanup`` sweeps it: then the run and its
  unfinished steps are ``failed`` and the version is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ZENML = str(Path(sys.executable).with_name("zenml"))
SOURCE = "pipelines.ranking.cross_encoder_training"


def _config(tmp_path: Path, model_name: str, max_steps: int = 4) -> dict:
    return {
        "model": {"name": model_name},
        "parameters": {
            "data": {"train": {"kind": "demo", "output_dir": str(tmp_path / "data"), "num_queries": 20,
                               "passages_per_query": 8, "seed": 0}, "eval_fraction": 0.25, "split_seed": 1},
            "retrieval": {"k": 8},
            "mining": {"negatives_per_positive": 2, "depth": 8},
            "cross_encoder": {"model": {"kind": "tiny_bert", "vocab_size": 300},
                              "training": {"max_steps": max_steps, "per_device_batch_size": 4, "max_length": 48,
                                           "logging_steps": 1, "device": "cpu", "precision": "fp32"}},
            "evaluation": {"rerank_depth": 8, "metrics": ["ndcg@10"], "primary_metric": "ndcg@10"},
        },
    }


def _write(tmp_path: Path, config: dict, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _cli(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ZENML, "pipeline", "run", SOURCE, "-c", str(config)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)


def _runs(client, model_name: str) -> list:
    return [r for r in client.list_pipeline_runs(sort_by="desc:created", size=50).items
            if r.model_version is not None and r.model_version.model.name == model_name]


@pytest.mark.parametrize("mistake", ["section_beside_parameters", "misspelled_nested_key"])
def test_a_bad_run_config_stops_the_documented_command_with_one_line(mistake, tmp_path, zenml_client):
    model_name = f"bad_cli_{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path, model_name)
    if mistake == "section_beside_parameters":
        config["cross_encoder"] = config["parameters"].pop("cross_encoder")
        expected = (": cross_encoder: unknown run-config key (a parameter of cross_encoder_training: indent it "
                    "under parameters:)")
    else:
        config["parameters"]["cross_encoder"]["training"]["learnin_rate"] = 1e-4
        expected = ": parameters.cross_encoder.training.learnin_rate: Extra inputs are not permitted"
    path = _write(tmp_path, config)
    runs_before = zenml_client.list_pipeline_runs(size=1).total
    done = _cli(path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == f"{path}{expected}"
    assert "Invalid or missing pipeline function entrypoint arguments" not in done.stderr
    assert zenml_client.list_pipeline_runs(size=1).total == runs_before
    assert not any(m.name == model_name for m in zenml_client.list_models(size=100).items)


def test_a_run_killed_during_training_leaves_no_model_version_after_cleanup(tmp_path, zenml_client):
    from steps.registry.stale_runs import lock_dir

    model_name = f"killed_{uuid.uuid4().hex[:8]}"
    path = _write(tmp_path, _config(tmp_path, model_name, max_steps=1_000_000))  # hours: it is killed first
    log = tmp_path / "killed_run.log"
    with log.open("w") as sink:
        process = subprocess.Popen([ZENML, "pipeline", "run", SOURCE, "-c", str(path)], cwd=ROOT, env=_env(),
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, f"the run ended before it was killed:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "train_cross_encoder did not start within 5 minutes"
            runs = _runs(zenml_client, model_name)
            step = runs[0].steps.get("train_cross_encoder") if runs else None
            if step is not None and str(step.status) == "running":
                break
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)  # the CLI's whole process group, as a kill of the terminal does
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    (killed,) = _runs(zenml_client, model_name)
    assert str(killed.status) == "running"  # no hook ran: this is the orphan
    version = killed.model_version
    assert version.stage is None
    assert (lock_dir() / f"{killed.id}.lock").exists()

    done = subprocess.run([sys.executable, "-m", "cli.cleanup", "cross_encoder_training"], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"marked failed (process died): {killed.name}" in done.stdout

    swept = zenml_client.get_pipeline_run(killed.id)
    assert str(swept.status) == "failed"
    assert str(swept.steps["train_cross_encoder"].status) == "failed"
    assert [m for m in zenml_client.list_model_versions(model_name, size=10).items] == []
    assert not (lock_dir() / f"{killed.id}.lock").exists()


def test_the_next_run_sweeps_only_runs_whose_process_died(tmp_path, zenml_client):
    """claim_run (called by every run's first step) fails a run whose lock is free, never one whose owner lives."""
    from steps.registry.stale_runs import claim_run, fail_dead_runs

    model_name = f"sweep_{uuid.uuid4().hex[:8]}"
    done = _cli(_write(tmp_path, _config(tmp_path, model_name)))
    assert done.returncode == 0, done.stderr[-3000:]
    (finished,) = _runs(zenml_client, model_name)
    assert str(finished.status) == "completed"
    # A finished run is never touched, and nor is this process's own claimed run.
    assert claim_run(uuid.uuid4(), "cross_encoder_training") == []
    assert fail_dead_runs("cross_encoder_training") == []
    assert str(zenml_client.get_pipeline_run(finished.id).status) == "completed"
    assert [v.number for v in zenml_client.list_model_versions(model_name, size=10).items] == [1]
