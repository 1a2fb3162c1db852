"""The curriculum report: one headline per curriculum against standard training, pacing and metric plots."""

import pytest

from finetune.ranking.metrics import compare_runs
from finetune.reports.ranking import curriculum_report


@pytest.fixture
def comparison():
    qrels = {"a": {"d1": 2}, "b": {"d2": 2}}
    first = {"a": {"d1": 2.0, "d9": 1.0}, "b": {"d2": 2.0, "d9": 1.0}}
    second = {"a": {"d1": 1.0, "d9": 2.0}, "b": {"d2": 1.0, "d9": 2.0}}
    return compare_runs(qrels, {"bm25": second, "standard_training": second, "linear": first}, ["ndcg@10"],
                        baseline="standard_training")


def test_report_has_pacing_curves_metrics_and_a_headline_per_curriculum(comparison):
    fractions = {"standard_training": [1.0] * 4, "linear": [0.25, 0.5, 0.75, 1.0]}
    logs = {"standard_training": [{"step": 2, "loss": 0.7}, {"step": 4, "loss": 0.5}], "linear": []}
    page = curriculum_report("Curricula", comparison, "ndcg@10", fractions, logs, {"best arm": "linear"})
    assert page.count("data:image/png;base64,") == 3  # pacing curves, metric bars, loss curves
    # linear ranks every relevant passage first (1.0) where standard training has it second (1/log2(3)).
    assert "linear scores ndcg@10 1.0000 vs standard_training 0.6309" in page
    assert page.count('class="headline"') == 1 and "Pacing" in page and "best arm" in page


def test_report_rejects_unknown_arms_and_metrics(comparison):
    with pytest.raises(ValueError, match=r"arms \['cubic'\]"):
        curriculum_report("x", comparison, "ndcg@10", {"cubic": [1.0]}, {})
    with pytest.raises(ValueError, match="primary_metric"):
        curriculum_report("x", comparison, "mrr@10", {"linear": [1.0]}, {})
