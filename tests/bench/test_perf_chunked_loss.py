"""The chunked-loss benchmark measures the same loss three ways, and its summary divides by the model's own."""

import pytest

from bench.perf_chunked_loss import VARIANTS, measure_one, summarise


def test_every_variant_computes_the_models_loss_on_one_layer_of_the_smollm2_shape():
    """SmolLM2-135M's shape cut to 1 layer: embedding 49,152 × 576 = 28,311,552 (tied) + one layer 3,540,096
    (attention 576·576·2 + 576·192·2 = 884,736, MLP 3·576·1,536 = 2,654,208, two norms 1,152) + final norm 576."""
    results = {v: measure_one("smollm2", 1, v, batch=1, block=16, chunk=6) for v in VARIANTS}
    assert {r["parameters"] for r in results.values()} == {28_311_552 + 3_540_096 + 576}
    for result in results.values():
        assert result["loss"] == pytest.approx(results["model"]["loss"], abs=1e-5)
        assert result["peak_rss_mb"] >= result["peak_rss_before_step_mb"] and result["seconds"] > 0


def test_summary_ratios_are_to_the_models_own_loss():
    def run(seconds, peak):
        return {"seconds": seconds, "step_peak_mb": peak, "peak_rss_mb": 1000 + peak, "rss_before_mb": 1000.0,
                "loss": 10.0, "parameters": 5, "layers": 2}

    out = summarise({"model": [run(2.0, 400.0), run(4.0, 600.0), run(3.0, 500.0)],
                     "chunked": [run(3.3, 100.0), run(3.6, 100.0), run(3.9, 150.0)]})
    assert out["chunked"]["step_peak_ratio"] == pytest.approx(100 / 500)
    assert out["chunked"]["time_ratio"] == pytest.approx(3.6 / 3.0)
    assert out["chunked"]["peak_rss_ratio"] == pytest.approx(1100 / 1500)
    assert out["model"]["step_peak_ratio"] == 1.0
