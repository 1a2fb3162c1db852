"""build_curriculum_report through ``.entrypoint()``: every arm against standard training, the best arm, the gate."""

import pytest

from finetune.params import RankingEvalParams
from steps.evaluate.build_curriculum_report import build_curriculum_report

EVALUATION = RankingEvalParams(metrics=("ndcg@10",))
ARMS = ["standard_training", "bm25_root_2"]


def _comparison() -> dict:
    """Standard training 0.5, 0.6 → mean 0.55; the curriculum 0.7, 0.7 → 0.70: Δ +0.15 = +27.3 %."""
    return {
        "baseline": "standard_training", "metrics": ["ndcg@10"],
        "means": {"standard_training": {"ndcg@10": 0.55}, "bm25_root_2": {"ndcg@10": 0.70}},
        "per_query": {"standard_training": {"ndcg@10": {"1": 0.5, "2": 0.6}},
                      "bm25_root_2": {"ndcg@10": {"1": 0.7, "2": 0.7}}},
        "p_values": {"bm25_root_2": {"ndcg@10": 0.0123}}, "significant": {"bm25_root_2": {"ndcg@10": True}},
        "alpha": 0.05, "stat_test": "student",
    }


def test_the_page_shows_each_arm_against_standard_training_and_the_decision(page, refused):
    logs = [[{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}], [{"step": 1, "loss": 3.0}]]
    report = page(build_curriculum_report.entrypoint(_comparison(), logs, [[1.0, 1.0], [0.33, 0.9]], ARMS,
                                                     "bm25_root_2", refused, EVALUATION))
    assert ("bm25_root_2 scores ndcg@10 0.7000 vs standard_training 0.5500: Δ +0.1500 (+27.3%), p = 0.0123 "
            "(paired student test), significant at α = 0.05.") in report.html
    assert report.has_row("standard_training", page.num("0.5500"), "<td></td>")  # the baseline has no p
    assert report.has_row("bm25_root_2", page.num("0.7000"), page.num("0.0123"))
    assert "Means over 2 judged queries" in report.html
    assert report.has_row("best arm", "bm25_root_2") and report.has_row("promotion", "not promoted")
    assert report.has_row("promotion reason", refused["reason"])
    assert report.images == 3  # pacing curves, metric bars, loss curves


def test_a_promoted_arm_names_the_stage(page, promoted):
    report = page(build_curriculum_report.entrypoint(_comparison(), [[], []], [[1.0], [0.5]], ARMS, "bm25_root_2",
                                                     promoted, EVALUATION))
    assert report.has_row("promotion", "promoted to production")
    assert report.images == 2  # no loss entries: no loss curves


def test_arm_names_must_match_the_logs_one_to_one(refused):
    with pytest.raises(ValueError) as error:
        build_curriculum_report.entrypoint(_comparison(), [[]], [[1.0]], ARMS, "bm25_root_2", refused, EVALUATION)
    assert str(error.value) == ("arm_names: 2 arms ['standard_training', 'bm25_root_2'] for 1 training logs and 1 "
                                "data-fraction curves; give each arm once, with one of each")
    with pytest.raises(ValueError, match=r"arm_names: 2 arms \['bm25_root_2', 'bm25_root_2'\] for 2 training logs"):
        build_curriculum_report.entrypoint(_comparison(), [[], []], [[1.0], [1.0]], ["bm25_root_2"] * 2,
                                           "bm25_root_2", refused, EVALUATION)
