"""bench.perf_sft helpers: the SmolLM2 run's training subset, its equal-loss rule and its BENCHMARKS.md section."""

import pandas as pd

from bench.perf_sft import LOSS_TOLERANCE, SETTINGS, equal_loss, markdown_smollm2, mega_batches, training_subset


def test_training_subset_is_seeded_ordered_and_whole_when_not_smaller():
    train = pd.DataFrame({"id": [f"x{i}" for i in range(20)]})
    sub = training_subset(train, 8)
    assert len(sub) == 8 and sub["id"].tolist() == training_subset(train, 8)["id"].tolist()
    positions = [int(i[1:]) for i in sub["id"]]
    assert positions == sorted(positions)  # original order kept, index reset
    assert sub.index.tolist() == list(range(8))
    assert training_subset(train, None) is train and training_subset(train, 20) is train


def test_mega_batches_follow_transformers_length_grouped_sampler():
    # LengthGroupedSampler: megabatch_mult = min(len // (batch × 4), 50), 1 when that is 0.
    assert [mega_batches(n, 8) for n in (31, 64, 128, 241, 10_000)] == [1, 2, 4, 7, 50]


def test_equal_loss_is_a_symmetric_tolerance_in_nats():
    assert equal_loss(1.50, 1.50 + 0.9 * LOSS_TOLERANCE)
    assert equal_loss(1.50 + 0.9 * LOSS_TOLERANCE, 1.50)
    assert not equal_loss(1.50, 1.50 + 1.1 * LOSS_TOLERANCE)


def test_smollm2_setting_matches_trl_defaults_where_it_must():
    smol = SETTINGS["smollm2"]
    assert smol.learning_rate == 2e-5  # SFTConfig's default learning rate
    assert smol.template == "chat" and smol.model.kind == "gguf" and smol.target == 1.3


def _arm(tokens_per_second: float, seconds: float, loss: float) -> dict:
    return {"train_seconds": {"min": seconds, "median": seconds, "max": seconds, "n": 1},
            "setup_seconds": {"min": 1.0, "median": 1.0, "max": 1.0, "n": 1},
            "train_tokens_per_second": {"best": tokens_per_second, "median": tokens_per_second, "n": 1},
            "train_cpu_seconds": {"min": 2 * seconds, "median": 2 * seconds, "max": 2 * seconds, "n": 1},
            "train_tokens_per_cpu_second": {"best": tokens_per_second / 2, "median": tokens_per_second / 2, "n": 1},
            "processed_tokens_per_epoch": 1000, "steps": 16, "validation_loss": [loss]}


def test_smollm2_section_reports_ratio_losses_and_verdict():
    data = {
        "machine": "2 CPU cores", "date": "2026-12-06 00:00 UTC", "load_average": [2.0, 2.1, 2.2],
        "data": {"train_pairs": 128, "validation_pairs": 34, "loss_tokens_per_epoch": 9000,
                 "real_tokens_per_epoch": 20000, "pairs_cut_at_max_length": 5, "template": "chat"},
        "benchmark_wall_seconds": 900.0, "model_preparation_seconds": 30.0, "benchmark_cpu_seconds": 1700.0,
        "model": {"parameters": 134_515_008, "precision": "fp32"},
        "settings": {"batch": 8, "learning_rate": 2e-5, "max_length": 256, "epochs": 1.0, "repetitions": 1,
                     "decompose": False, "updates": 16, "warmup_steps": 1},
        "results": {"trl_defaults": _arm(20.0, 450.0, 1.2345), "ours": _arm(40.0, 225.0, 1.2400)},
        "ratio_ours_over": {"trl_defaults": {"best": 2.0, "median": 2.0}},
        "cpu_time_ratio_ours_over": {"trl_defaults": 2.0}, "target": 1.3, "target_met": True,
        "untrained_validation_loss": 1.3, "loss_tolerance": LOSS_TOLERANCE, "equal_loss": True, "profile_ours": None,
    }
    text = markdown_smollm2(data)
    assert text.startswith("## SFT training throughput vs TRL SFTTrainer on SmolLM2-135M")
    assert "load average 2.00, 2.10, 2.20" in text
    assert "| TRL `SFTTrainer`, defaults | 20.0 | 20.0 | 450.0 / 450.0 | 1,000 | 16 | 1.2345 | 2.00 / 2.00 |" in text
    assert "**met**: throughput 2.00× (met); held-out loss ours 1.2400, TRL defaults 1.2345 (+0.0055; equal" in text
    assert "ours trains 20.0 loss tokens per CPU-second, TRL defaults 10.0: 2.00×" in text
    assert "not measured here" in text
