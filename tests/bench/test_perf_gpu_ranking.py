"""The GPU ranking bench and the phase profiler: their CPU paths, their no-CUDA behaviour, their tables."""

import json

import pytest

from bench import perf
from bench import profile_phases as phases
from bench.perf_gpu_ranking import main, markdown


def test_without_cuda_it_says_so_and_keeps_a_gpu_measurement(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(perf, "RESULTS", tmp_path)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main([]) == 0
    assert capsys.readouterr().out.count("\n") == 1
    assert "Not run here" in (tmp_path / "perf_gpu_ranking.md").read_text()
    assert json.loads((tmp_path / "perf_gpu_ranking.json").read_text())["run"] is False
    (tmp_path / "perf_gpu_ranking.json").write_text(json.dumps({"cuda": True}))
    (tmp_path / "perf_gpu_ranking.md").write_text("## measured on a GPU\n")
    assert main([]) == 0
    assert (tmp_path / "perf_gpu_ranking.md").read_text() == "## measured on a GPU\n"


def test_the_table_says_met_or_missed_per_target():
    """Rendering only (the numbers are made up for the layout, never written anywhere)."""
    run = {"path": "ours", "precision": "bf16", "batch": 256, "best": 21_000.0, "median": 20_500.0,
           "max_abs_diff_vs_fp32": 0.02}
    data = {"machine": "m", "date": "d", "repetitions": 3, "training": {"run": False, "why": "--skip-training"},
            "reranking": {"pairs": 4300, "source": "s", "peer_best": 3000.0, "best_half": run,
                          "ratio_vs_peer_best": 7.0, "runs": {"a": {"path": "peer", "precision": "fp32", "batch": 32,
                                                                   "best": 3000.0, "median": 2900.0}, "b": run},
                          "met": {"docs_per_second": True, "vs_peer": True, "scores": False}}}
    text = markdown(data)
    assert "| `CrossEncoder.predict` | fp32 | 32 | 3,000 | 2,900 | — |" in text
    assert "| `score_pairs` | bf16 | 256 | 21,000 | 20,500 | 2.0e-02 |" in text
    assert "**met**), 7.0×" in text and "of fp32: **missed**" in text
    assert "Cross-encoder training: not measured (--skip-training)." in text


def test_the_phase_profiler_times_every_phase_on_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(phases, "RESULTS", tmp_path)
    assert phases.main(["--train-batch", "2", "--rerank-batch", "4", "--max-length", "32"]) == 0
    data = json.loads((tmp_path / "profile_phases_cpu_fp32.json").read_text())
    train = {row["phase"]: row for row in data["train"]}
    rerank = {row["phase"]: row for row in data["rerank"]}
    assert list(train) == list(phases.TRAIN_PHASES) and list(rerank) == list(phases.RERANK_PHASES)
    for row in [*data["train"], *data["rerank"]]:
        assert row["host_ms"] > 0 and row["device_ms"] == 0.0  # every range ran; no device time on CPU
    assert sum(r["host_ms"] for r in data["train"]) <= data["train_wall_ms"] * 1.05  # ranges do not overlap
    assert data["train_tokens"] <= 2 * 32
    assert "| forward |" in capsys.readouterr().out


def test_the_phase_profiler_refuses_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert phases.main(["--device", "cuda"]) == 1


@pytest.mark.gpu
def test_the_phase_profiler_reports_device_time_on_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(phases, "RESULTS", tmp_path)
    assert phases.main(["--device", "cuda", "--precision", "bf16", "--train-batch", "4", "--rerank-batch", "8"]) == 0
    data = json.loads((tmp_path / "profile_phases_cuda_bf16.json").read_text())
    assert {r["phase"]: r for r in data["train"]}["forward"]["device_ms"] > 0
