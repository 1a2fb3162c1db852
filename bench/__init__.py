"""Benchmarks: run our code and the baseline side by side in one process and write BENCHMARKS.md."""
