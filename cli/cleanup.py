"""Fail the runs whose process died and delete their model versions.

A run killed with SIGKILL never runs its failure hook; the next run of the same pipeline sweeps it up at its first
step (see ``steps/registry/stale_runs.py``). This command does the same sweep at once, for every pipeline or one.

Usage: ``python -m cli.cleanup [pipeline_name]``
"""

from __future__ import annotations

import sys

from steps.registry.stale_runs import fail_dead_runs


def main(argv: list[str]) -> int:
    failed = fail_dead_runs(argv[0] if argv else None)
    print("\n".join(f"marked failed (process died): {name}" for name in failed) or "no dead runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
