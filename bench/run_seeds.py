"""Run one recipe once per training seed: the ≥ 3 seeds the ranking targets are averaged over.

    python -m bench.run_seeds pipelines.ranking.cross_encoder_training configs/cross_encoder_training_msmarco.yaml \
        --seeds 42 43 44

Each seed gets a copy of the config with every ``training.seed`` replaced (the data split, mining and teacher scores
keep theirs, so ZenML's cache reuses them across seeds) and one ``zenml pipeline run``. ``bench.ranking_msmarco``
then averages the per-query metrics of the latest run of each seed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def with_training_seed(config: dict, seed: int) -> tuple[dict, int]:
    """A copy of ``config`` whose every ``training: {seed: ...}`` mapping holds ``seed``; returns (copy, count)."""
    count = 0

    def visit(node):
        nonlocal count
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "training" and isinstance(value, dict):
                    value = {**value, "seed": seed}
                    count += 1
                out[key] = visit(value)
            return out
        if isinstance(node, list):
            return [visit(item) for item in node]
        return node

    return visit(config), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", help="e.g. pipelines.ranking.cross_encoder_training")
    parser.add_argument("config", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    zenml = Path(sys.executable).with_name("zenml")
    for seed in args.seeds:
        seeded, count = with_training_seed(config, seed)
        if count == 0:
            raise SystemExit(f"{args.config}: no 'training' section to set a seed in")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{args.config.stem}_seed{seed}.yaml"
            path.write_text(yaml.safe_dump(seeded, sort_keys=False))
            print(f"== {args.pipeline} seed {seed}", flush=True)
            status = subprocess.call([str(zenml), "pipeline", "run", args.pipeline, "-c", str(path)])
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
