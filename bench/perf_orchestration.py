"""Orchestration overhead: a ZenML run of ``cross_encoder_training`` against the compute of its steps.

The pipeline runs on a throw-away ZenML store (a temporary ``ZENML_CONFIG_PATH``, local orchestrator, default
stack) with ``configs/demo/cross_encoder_training.yaml`` as ``make demo`` runs it (``BENCH_OVERRIDES`` can shrink
it): synthetic MS MARCO files, packaged all-MiniLM-L6-v2, BM25, mining, training, reranking, ranx evaluation,
promotion and report.

"Compute" is measured two ways, and both are reported:

- **in-step**: inside the ZenML runs, the seconds spent in each step function (``BaseStep.call_entrypoint``,
  timed by a wrapper this script installs). It includes the ZenML calls a step makes itself (``log_metadata``,
  the model-version calls of ``promote_model``), timed separately too.
- **plain**: the same step functions called one after another through ``step.entrypoint(...)`` in the same
  process with no ZenML run at all (metadata goes to the Python log, and promotion is the library's
  ``decide_promotion`` with no production version, as ``promote_model`` computes it on a fresh store).

Uncached ZenML runs (``enable_cache=False``) and plain runs alternate, after one warm-up run with caching on
(which fills the cache). Then the pipeline is re-run with caching on and nothing changed: ``fingerprint_sources``
and ``promote_model`` run by design (they look at files and at the registry); the report lists the steps that
ran. Wrappers around ZenML's step launcher and runner split the overhead into artifact loading, artifact saving
(materializers, visualisations, metadata, registration), the rest of the step runner, the launcher (cache lookup,
step-run records) and the pipeline's own setup. Each run's process CPU time is recorded next to its wall time:
on a shared machine the wall time grows with the background load, the CPU time much less.

Run: ``python -m bench.perf_orchestration [--repetitions 5]`` (the target is a median of ≥ 5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo" / "cross_encoder_training.yaml"
# Shrinks the demo (~100 training steps, ~90 s on 2 idle cores) so that the 8 full runs of this bench fit its
# ~3 minute share of `make bench`.
# The demo config as `make demo` runs it (~100 updates, 2,000 pairs reranked): ZenML's cost is ~2 s per run whatever
# the compute, so a shrunk pipeline (an earlier version of this bench ran 12 updates: 7 s of compute, ratio 1.38)
# measures the fixed cost, not the overhead a user sees. Keys here would override the demo config.
BENCH_OVERRIDES: dict[str, object] = {}
TARGET_RATIO = 1.10
TARGET_CACHED_SECONDS = 10.0
ALWAYS_RUN = ("fingerprint_sources", "promote_model", "build_ranking_report")


class Timers:
    """Seconds accumulated per (phase, step name) by wrappers around ZenML internals; reset per run."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.current_step = ""

    def reset(self) -> None:
        self.seconds.clear()

    def total(self, phase: str) -> float:
        return sum(v for (p, _), v in self.seconds.items() if p == phase)

    def by_step(self, phase: str) -> dict[str, float]:
        return {s: v for (p, s), v in self.seconds.items() if p == phase}


def instrument(timers: Timers) -> None:
    """Wrap ZenML's step launcher and runner, the step call, artifact load/save and ``log_metadata``."""
    from zenml.model.model import Model
    from zenml.orchestrators.step_launcher import StepLauncher
    from zenml.orchestrators.step_runner import StepRunner
    from zenml.steps.base_step import BaseStep

    import steps.metadata

    def wrap(owner, name: str, phase: str, step_name=None) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            if step_name is not None:
                timers.current_step = step_name(args)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers.seconds[phase, timers.current_step] += time.perf_counter() - start

        setattr(owner, name, timed)

    wrap(StepLauncher, "launch", "launch", lambda args: args[0]._invocation_id)
    wrap(StepRunner, "run", "runner")
    wrap(StepRunner, "_parse_inputs", "load_artifacts")
    wrap(StepRunner, "_store_output_artifacts", "save_artifacts")
    wrap(BaseStep, "call_entrypoint", "compute")
    wrap(steps.metadata, "log_metadata", "metadata_calls")
    wrap(Model, "log_metadata", "metadata_calls")  # promote_model records metrics and sets the stage itself
    wrap(Model, "set_stage", "metadata_calls")


def _set(config: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        config = config.setdefault(key, {})
    config[keys[-1]] = value


def bench_config(workdir: Path) -> tuple[Path, dict]:
    """The demo config with ``BENCH_OVERRIDES``, its data written under ``workdir``; (path, parameters)."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    _set(config, "parameters.data.train.output_dir", str(workdir / "data"))
    for key, value in BENCH_OVERRIDES.items():
        _set(config["parameters"], key, value)
    config["model"]["name"] = "orchestration_bench_reranker"
    path = workdir / "cross_encoder_training.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config["parameters"]


def plain_run(parameters: dict) -> dict:
    """The pipeline's steps called as plain functions, wired exactly as ``cross_encoder_training`` wires them
    (with no teacher and no fusion, as the demo config has): every step of the ZenML run but ``promote_model``,
    whose decision the library computes here. Until 2026-12-07 this left out ``fingerprint_base_model`` and
    ``rerank_starting_point`` (added to the pipeline later, ~4.7 s together), which the ratio then counted as
    ZenML's overhead."""
    from finetune.params import (
        CrossEncoderParams,
        MiningParams,
        PromotionParams,
        RankingDataParams,
        RankingEvalParams,
        RetrievalParams,
    )
    from finetune.promotion import decide_promotion, parent_specs
    from finetune.ranking.evaluation import metric_key
    from steps.data.fingerprint_sources import fingerprint_sources
    from steps.data.load_msmarco import load_msmarco
    from steps.data.mine_hard_negatives import mine_hard_negatives
    from steps.data.retrieve_first_stage import retrieve_first_stage
    from steps.evaluate.build_ranking_report import build_ranking_report
    from steps.evaluate.evaluate_reranker import evaluate_reranker
    from steps.evaluate.rerank_candidates import rerank_candidates
    from steps.evaluate.rerank_starting_point import rerank_starting_point
    from steps.registry.fingerprint_models import fingerprint_models
    from steps.train.train_cross_encoder import train_cross_encoder

    data = RankingDataParams(**parameters["data"])
    retrieval = RetrievalParams(**parameters["retrieval"])
    mining = MiningParams(**parameters["mining"])
    cross_encoder = CrossEncoderParams(**parameters["cross_encoder"])
    evaluation = RankingEvalParams(**parameters["evaluation"])
    promotion = PromotionParams(**parameters["promotion"])

    fingerprints = fingerprint_sources.entrypoint(data)
    train_set, eval_set = load_msmarco.entrypoint(data, fingerprints)
    train_run, eval_run = retrieve_first_stage.entrypoint(train_set, eval_set, retrieval)
    pairs = mine_hard_negatives.entrypoint(train_set, train_run, mining)
    base = fingerprint_models.entrypoint(parent_specs({"base_model": cross_encoder.model}))
    model_dir, training_log = train_cross_encoder.entrypoint(pairs, cross_encoder, base)
    max_length = cross_encoder.training.max_length
    reranked, stats = rerank_candidates.entrypoint(model_dir, eval_set, eval_run, evaluation, max_length)
    start, _ = rerank_starting_point.entrypoint(cross_encoder.model.model_dump(mode="json"), pairs, eval_set,
                                                eval_run, evaluation, max_length, base)
    metrics, comparison = evaluate_reranker.entrypoint(eval_set, eval_run, reranked, evaluation, start)
    key = metric_key(evaluation.primary_metric)
    decision = decide_promotion(
        metric=key, candidate=metrics[key], baseline=metrics[metric_key(evaluation.primary_metric, "bm25")],
        baseline_significant=bool(metrics[f"significant_{key}"]), params=promotion).to_dict()
    build_ranking_report.entrypoint(comparison, training_log, stats, decision, fingerprints, evaluation)
    shutil.rmtree(model_dir.path, ignore_errors=True)
    return metrics


def zenml_run(config_path: Path, timers: Timers, enable_cache: bool) -> dict:
    """One pipeline run; its wall time, the instrumented phases and each step's status."""
    from zenml.client import Client

    from pipelines.ranking import cross_encoder_training

    timers.reset()
    start, cpu_start = time.perf_counter(), time.process_time()
    run = cross_encoder_training.with_options(config_path=str(config_path), enable_cache=enable_cache)()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    run = Client().get_pipeline_run(run.id)
    phases = {phase: timers.total(phase) for phase in
              ("launch", "runner", "load_artifacts", "save_artifacts", "compute", "metadata_calls")}
    return {"wall": wall, "cpu": cpu, **phases, "compute_by_step": timers.by_step("compute"),
            "launch_by_step": timers.by_step("launch"),
            "statuses": {name: str(step.status) for name, step in run.steps.items()}}


def overhead_rows(run: dict) -> list[tuple[str, float]]:
    """Where a ZenML run's time goes, in seconds that add up to its wall time."""
    compute = run["compute"] - run["metadata_calls"]
    runner_rest = run["runner"] - run["compute"] - run["load_artifacts"] - run["save_artifacts"]
    return [
        ("step compute (inside the step functions, less ZenML calls)", compute),
        ("ZenML calls made inside steps (log_metadata, model stage)", run["metadata_calls"]),
        ("artifact loading (materializer load, input resolution)", run["load_artifacts"]),
        ("artifact saving (materializers, visualisations, metadata, registration)", run["save_artifacts"]),
        ("step runner, rest (context, hooks, step-run metadata, publish)", runner_rest),
        ("step launcher (cache lookup, step-run records, logging)", run["launch"] - run["runner"]),
        ("pipeline (compile, snapshot, run and model-version records)", run["wall"] - run["launch"]),
    ]


def report(warmup: dict, seconds: dict[str, list[float]], plain_cpu: list[float], zenml_runs: list[dict],
           cached: list[dict], note: str) -> tuple[dict, str]:
    from bench.perf import machine, summary

    in_step = [r["compute"] for r in zenml_runs]
    zen, plain = summary(seconds["zenml"]), summary(seconds["plain"])
    in_step_s = summary(in_step)
    ratio_plain = {"min": zen["min"] / plain["min"], "median": zen["median"] / plain["median"]}
    ratio_in_step = {"min": min(r["wall"] / r["compute"] for r in zenml_runs),
                     "median": statistics.median(r["wall"] / r["compute"] for r in zenml_runs)}
    cached_s = summary([r["wall"] for r in cached])
    zen_cpu, plain_cpu_s, cached_cpu = (summary([r["cpu"] for r in zenml_runs]), summary(plain_cpu),
                                        summary([r["cpu"] for r in cached]))
    ratio_cpu = {"min": zen_cpu["min"] / plain_cpu_s["min"], "median": zen_cpu["median"] / plain_cpu_s["median"]}
    median_run = sorted(zenml_runs, key=lambda r: r["wall"])[len(zenml_runs) // 2]
    median_cached = sorted(cached, key=lambda r: r["wall"])[len(cached) // 2]
    ran = sorted(name for name, status in median_cached["statuses"].items() if status != "cached")
    met_ratio = ratio_plain["median"] <= TARGET_RATIO and ratio_in_step["median"] <= TARGET_RATIO
    met_cached = cached_s["median"] <= TARGET_CACHED_SECONDS
    data = {
        "pipeline": "cross_encoder_training", "config": str(DEMO_CONFIG.relative_to(ROOT)),
        "overrides": BENCH_OVERRIDES, "note": note,
        "warmup_run_seconds": warmup["wall"],
        "zenml_uncached_seconds": zen, "plain_seconds": plain, "in_step_compute_seconds": in_step_s,
        "ratio_zenml_over_plain": ratio_plain, "ratio_zenml_over_in_step": ratio_in_step,
        "cached_rerun_seconds": cached_s, "cached_rerun_ran": ran,
        "cpu_seconds": {"zenml_uncached": zen_cpu, "plain": plain_cpu_s, "cached_rerun": cached_cpu},
        "ratio_cpu_zenml_over_plain": ratio_cpu,
        "breakdown_uncached_median_run": dict(overhead_rows(median_run)),
        "breakdown_cached_median_run": dict(overhead_rows(median_cached)),
        "compute_by_step_median_run": median_run["compute_by_step"],
        "cached_launch_by_step": median_cached["launch_by_step"],
        "runs": {"zenml": zenml_runs, "cached": cached},
        "targets": {"ratio": TARGET_RATIO, "cached_seconds": TARGET_CACHED_SECONDS,
                    "ratio_met": met_ratio, "cached_met": met_cached},
    }

    def rows(run: dict) -> str:
        return "\n".join(f"| {label} | {value:.2f} | {100 * value / run['wall']:.1f} % |"
                         for label, value in overhead_rows(run))

    timing_rows = "\n".join(
        f"| {label} | {t['min']:.2f} | {t['median']:.2f} | "
        + (f"{r['min']:.3f} / {r['median']:.3f} |" if r else "|")
        for label, t, r in (("ZenML run, uncached", zen, None), ("plain run (no ZenML)", plain, ratio_plain),
                            ("in-step compute of the ZenML runs", in_step_s, ratio_in_step),
                            ("cached re-run", cached_s, None),
                            ("CPU s: ZenML run, uncached", zen_cpu, None),
                            ("CPU s: plain run", plain_cpu_s, ratio_cpu),
                            ("CPU s: cached re-run", cached_cpu, None)))
    overrides = ", ".join(f"`{k}: {v}`" for k, v in BENCH_OVERRIDES.items())
    config_as = f"overridden by {overrides}" if overrides else "as `make demo` runs it"
    markdown = f"""## Orchestration overhead and cached re-run (`python -m bench.perf_orchestration`)

**Machine**: {machine()}. {note}

**Setup.** `cross_encoder_training` with `{DEMO_CONFIG.relative_to(ROOT)}` {config_as} on a throw-away ZenML
store (temporary `ZENML_CONFIG_PATH`, local orchestrator). Uncached ZenML runs (`enable_cache=False`) alternate
with **plain** runs of the same step functions called through
`step.entrypoint(...)` in the same process without ZenML, {len(zenml_runs)} repetitions each, after one warm-up
run ({warmup['wall']:.1f} s, fills the cache). **In-step** compute is the time inside the step functions during
the ZenML runs themselves. Then {len(cached)} re-runs with caching on and nothing changed.

| | min s | median s | ZenML ÷ compute (min / median) |
|---|---|---|---|
{timing_rows}

Where the time goes in the median uncached run ({median_run['wall']:.2f} s):

| part | s | share |
|---|---|---|
{rows(median_run)}

Cached re-run ({median_cached['wall']:.2f} s, median): steps that ran: {", ".join(f"`{s}`" for s in ran)}; the rest
were cache hits.

| part | s | share |
|---|---|---|
{rows(median_cached)}

**Targets**: ZenML ÷ compute ≤ {TARGET_RATIO:.2f} — **{"met" if met_ratio else "missed"}** (median
{ratio_plain['median']:.3f} against plain, {ratio_in_step['median']:.3f} against in-step); cached re-run ≤
{TARGET_CACHED_SECONDS:.0f} s — **{"met" if met_cached else "missed"}** (median {cached_s['median']:.2f} s).
{"" if met_ratio else why_missed(median_run, plain)}"""
    return data, markdown


def why_missed(run: dict, plain: dict) -> str:
    """The reading of the breakdown when the ratio target is missed: a fixed cost per run, and the rest."""
    outside = run["wall"] - run["compute"] + run["metadata_calls"]
    extra = run["compute"] - run["metadata_calls"] - plain["median"]
    return f"""
**Why it is missed.** ZenML's work is a roughly fixed {outside:.1f} s per run here (everything in the breakdown
but the step compute; ~{outside / len(run["compute_by_step"]):.1f} s per step, most of it SQLite records, artifact
saving and the metadata/model-version calls), {100 * outside / run["compute"]:.0f} % of this pipeline's compute;
the rest of the ratio is run-to-run spread of the steps themselves (compare min and median above).
Our materializers are not where the time goes
(artifact saving, which includes copying the 87 MiB model directory, is {run["save_artifacts"]:.1f} s). In
addition the step functions themselves took {extra:+.1f} s against the plain run's median (the same functions
and seeds). ZenML's step-log capture is not what makes that gap: with `ZENML_DISABLE_STEP_LOGS_STORAGE=true` the
in-step compute was the same (55.0 s against 54.2 s, 3 repetitions each, 2026-12-07).
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--note", default="", help="one sentence on the conditions (e.g. background load)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="orchestration-bench-"))
    os.environ.update({
        "ZENML_CONFIG_PATH": str(workdir / "zenml"), "ZENML_ANALYTICS_OPT_IN": "false", "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false", "ZENML_LOGGING_VERBOSITY": "WARN", "ZENML_ENABLE_RICH_TRACEBACK": "false",
    })
    try:
        from zenml.client import Client

        from bench.perf import alternate, write_result

        Client().active_stack  # noqa: B018  (creates the store and the default stack)
        timers = Timers()
        instrument(timers)
        config_path, parameters = bench_config(workdir)
        warmup = zenml_run(config_path, timers, enable_cache=True)
        print(f"warm-up run {warmup['wall']:.1f} s", flush=True)
        zenml_runs: list[dict] = []
        plain_cpu: list[float] = []

        def uncached() -> None:
            zenml_runs.append(zenml_run(config_path, timers, enable_cache=False))

        def plain() -> None:
            start = time.process_time()
            plain_run(parameters)
            plain_cpu.append(time.process_time() - start)

        seconds = alternate({"zenml": uncached, "plain": plain}, repetitions=args.repetitions, warmup=False)
        print(f"uncached {seconds['zenml']}, plain {seconds['plain']}", flush=True)
        cached = [zenml_run(config_path, timers, enable_cache=True) for _ in range(args.repetitions)]
        print(f"cached {[round(r['wall'], 2) for r in cached]}", flush=True)
        load = os.getloadavg()[0]
        data, markdown = report(warmup, seconds, plain_cpu, zenml_runs, cached,
                                args.note or f"Load average {load:.1f} at the end of the run.")
        print(write_result("orchestration", data, markdown).read_text())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
