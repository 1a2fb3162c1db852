"""The data-scale benchmark's arithmetic: projection through the two largest sizes, against the 8 GiB target."""

import pytest

from bench.perf_data_scale import FULL_COLLECTION, MEMORY_LIMIT_GIB, report


def _results(bytes_per_passage: float, fixed: float, cpu_us: float) -> dict[int, list[dict[str, float]]]:
    """Two repetitions per size of a process whose peak RSS is baseline + fixed + bytes_per_passage x n."""

    def rep(n, jitter):
        return {"passages": n, "vocabulary": n // 40, "retrieved_candidates": 9800, "baseline_rss": 300e6,
                "peak_rss_after_load": 300e6 + 60 * n, "peak_rss": 300e6 + fixed + bytes_per_passage * n + jitter,
                "load_seconds": 1e-6 * n, "load_cpu_seconds": 1e-6 * n, "index_seconds": cpu_us * 1e-6 * n,
                "index_cpu_seconds": cpu_us * 1e-6 * n, "retrieve_seconds": 1.0, "retrieve_cpu_seconds": 1.0}

    return {n: [rep(n, -1e3), rep(n, 1e3)] for n in (100_000, 1_000_000, 3_000_000)}


def test_projection_extends_the_line_through_the_two_largest_sizes():
    """600 bytes a passage + 200 MB fixed + 300 MB baseline: 300e6 + 200e6 + 600 x 8,841,823 = 5.805e9 bytes."""
    data, markdown = report(_results(600.0, 200e6, 30.0), "Idle machine.")

    assert data["projection"]["peak_rss_bytes"] == pytest.approx(500e6 + 600 * FULL_COLLECTION)
    assert data["projection"]["net_rss_bytes_line"][1] == pytest.approx(600.0)
    assert data["projection"]["cpu_seconds"] == pytest.approx(31e-6 * FULL_COLLECTION)
    assert data["growth"]["size_ratio"] == 30 and data["growth_largest"]["size_ratio"] == 3
    assert data["linear_time"] and data["bounded_memory"] and data["fits_in_8_gib"] and data["met"]
    assert "within 8 GiB" in markdown and "**met**" in markdown and "Idle machine." in markdown


def test_a_projection_over_the_limit_misses_the_target():
    per_passage = (MEMORY_LIMIT_GIB * 2**30 - 500e6) / FULL_COLLECTION + 10  # just over, after fixed + baseline

    data, markdown = report(_results(per_passage, 200e6, 30.0), "")

    assert not data["fits_in_8_gib"] and not data["met"]
    assert "OVER 8 GiB" in markdown and "**missed**" in markdown
