"""Unlabeled queries for a teacher, score fusion, paired tests against the starting model, the gate's baselines."""

import pandas as pd
import pytest

from finetune.data.ranking import fingerprint_sources, load_unlabeled_queries
from finetune.data.types import DataFormatError, RankingSet
from finetune.params import CrossEncoderParams, FusionParams, PromotionParams, RankingDataParams, UnlabeledQueries
from finetune.promotion import strongest_baseline
from finetune.ranking.cross_encoder import PAIR_COLUMNS, candidate_groups, is_cross_encoder
from finetune.ranking.distillation import with_unlabeled
from finetune.ranking.evaluation import versus_metrics
from finetune.ranking.fusion import fuse, min_max
from finetune.ranking.metrics import compare_runs

CORPUS = {"1": "paris is the capital of france", "2": "berlin is in germany", "3": "the moon orbits the earth"}


def _set(name, queries):
    return RankingSet(name=name, corpus=CORPUS, queries=queries, qrels={})


def test_unlabeled_queries_drop_known_ids_and_texts_and_sample_by_seed(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("10\tcapital of france\n11\tWhere is Berlin \n12\tmoon\n13\tearth\n14\tgermany\n")
    train, evaluation = _set("train", {"10": "other"}), _set("eval", {"99": "where is berlin"})
    got = load_unlabeled_queries(UnlabeledQueries(queries=path), train, evaluation)
    assert got.queries == {"12": "moon", "13": "earth", "14": "germany"} and got.qrels == {}
    assert got.corpus is CORPUS
    sampled = load_unlabeled_queries(UnlabeledQueries(queries=path, max_queries=2, seed=3), train, evaluation)
    again = load_unlabeled_queries(UnlabeledQueries(queries=path, max_queries=2, seed=3), train, evaluation)
    assert len(sampled.queries) == 2 and sampled.queries == again.queries
    assert set(sampled.queries) <= {"12", "13", "14"}


def test_unlabeled_queries_all_known_is_a_one_line_error(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("10\tcapital of france\n")
    with pytest.raises(DataFormatError, match=r"q\.tsv: no unlabeled query left .*\(1 read\)$"):
        load_unlabeled_queries(UnlabeledQueries(queries=path), _set("train", {"10": "x"}), _set("eval", {}))


def test_unlabeled_file_is_fingerprinted(tmp_path):
    files = {}
    for name, text in {"c": "1\tpassage\n", "q": "5\tquery\n", "r": "5 0 1 1\n", "u": "7\tnew query\n"}.items():
        files[name] = tmp_path / f"{name}.tsv"
        files[name].write_text(text)
    source = {"kind": "msmarco_files", "collection": files["c"], "queries": files["q"], "qrels": files["r"]}
    params = RankingDataParams(train=source, unlabeled={"queries": files["u"]})
    before = fingerprint_sources(params)["unlabeled/queries"]
    files["u"].write_text("7\tnew query\n8\tanother\n")
    assert fingerprint_sources(params)["unlabeled/queries"] != before


def test_candidate_groups_follow_the_first_stage_and_continue_group_numbers():
    data = _set("unlabeled", {"a": "capital", "b": "moon", "c": "nothing"})
    run = {"a": {"1": 3.0, "2": 1.0, "3": 2.0}, "b": {"3": 5.0, "1": 1.0}, "c": {"2": 1.0}}
    groups = candidate_groups(data, run, depth=2, first_group=7)
    assert list(groups.columns) == PAIR_COLUMNS
    assert groups[["group", "qid", "pid"]].values.tolist() == [[7, "a", "1"], [7, "a", "3"], [8, "b", "3"],
                                                               [8, "b", "1"]]  # "c": one candidate, left out
    assert set(groups["role"]) == {"candidate"} and set(groups["grade"]) == {0}
    mined = pd.DataFrame([dict(group=0, qid="q", query="x", pid="1", passage="p", grade=1, role="positive"),
                          dict(group=1, qid="q", query="x", pid="2", passage="p", grade=0, role="negative")])
    both = with_unlabeled(mined, groups)
    assert both["group"].tolist() == [0, 1, 2, 2, 3, 3]
    assert with_unlabeled(mined, None) is mined


def test_fuse_golden_values():
    assert min_max({"a": 5.0, "b": 1.0, "c": 3.0}) == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert min_max({"a": 2.0, "b": 2.0}) == {"a": 0.0, "b": 0.0}
    reranker = {"q": {"a": 5.0, "b": 1.0, "c": 3.0}}
    bm25 = {"q": {"a": 10.0, "b": 20.0}}  # c not retrieved by it: 0
    fused = fuse([(reranker, 0.7), (bm25, 0.3)])
    assert fused["q"] == pytest.approx({"a": 0.7, "b": 0.3, "c": 0.35})
    assert fuse([(reranker, 1.0), (bm25, 0.0)])["q"] == pytest.approx({"a": 1.0, "b": 0.0, "c": 0.5})


def test_fusion_params_keep_the_reranker_a_weight():
    assert FusionParams(first_stage=0.1, starting_point=0.6).reranker == pytest.approx(0.3)
    with pytest.raises(ValueError, match="must stay below 1"):
        FusionParams(first_stage=0.5, starting_point=0.5)


def test_cross_encoder_as_student_keeps_model_and_training():
    params = CrossEncoderParams(teacher_loss="kl", temperature=0.05, training={"learning_rate": 7e-5})
    student = params.as_student()
    assert student.student == params.model and student.keep_layers is None
    assert (student.loss, student.temperature, student.training.learning_rate) == ("kl", 0.05, 7e-5)


def test_versus_metrics_pair_the_candidate_with_the_starting_point():
    qrels = {"1": {"a": 2}, "2": {"b": 2}, "3": {"c": 2}}
    good = {"1": {"a": 2.0, "x": 1.0}, "2": {"b": 2.0, "x": 1.0}, "3": {"c": 2.0, "x": 1.0}}
    bad = {"1": {"a": 1.0, "x": 2.0}, "2": {"b": 1.0, "x": 2.0}, "3": {"c": 2.0, "x": 1.0}}
    comparison = compare_runs(qrels, {"bm25": bad, "zero_shot": bad, "fused": good}, ["mrr@10"], "bm25")
    got = versus_metrics(comparison, "fused", "zero_shot", "student", 0.05)
    assert got["zero_shot_test_mrr@10"] == pytest.approx(2 / 3)
    assert got["p_value_test_mrr@10_vs_zero_shot"] == pytest.approx(comparison.p_values["fused"]["mrr@10"])
    assert got["significant_test_mrr@10_vs_zero_shot"] == float(comparison.significant["fused"]["mrr@10"])


def test_strongest_baseline_follows_the_metric_direction_and_gate_option():
    assert strongest_baseline("test_ndcg@10", {"bm25_test_ndcg@10": 0.5, "zero_shot_test_ndcg@10": 0.64}) == \
        "zero_shot_test_ndcg@10"
    assert strongest_baseline("test_perplexity", {"base": 20.0, "other": 18.0}) == "other"
    assert strongest_baseline("test_ndcg@10", {}) is None
    assert PromotionParams().baseline == "first_stage"
    with pytest.raises(ValueError):
        PromotionParams(baseline="teacher")


def test_is_cross_encoder_reads_the_head():
    from transformers import BertConfig

    assert is_cross_encoder(BertConfig(architectures=["BertForSequenceClassification"], num_labels=1))
    assert not is_cross_encoder(BertConfig(architectures=["BertForSequenceClassification"], num_labels=2))
    assert not is_cross_encoder(BertConfig(architectures=["BertModel"]))


def test_gate_on_the_starting_point_needs_a_pipeline_that_evaluates_it():
    from finetune.params import RankingEvalParams, RetrievalParams
    from pipelines.ranking import ranking_gate

    with pytest.raises(ValueError, match="needs a starting-point evaluation"):
        ranking_gate({}, {}, "student", {}, RankingEvalParams(), RetrievalParams(),
                     PromotionParams(baseline="both"), parents={})


def test_unlabeled_queries_without_a_teacher_are_refused_before_any_step(tmp_path):
    from pipelines.ranking import no_unlabeled_without_teacher

    source = {"kind": "demo", "output_dir": str(tmp_path / "demo")}
    data = RankingDataParams(train=source, unlabeled={"queries": tmp_path / "u.tsv"})
    with pytest.raises(ValueError, match="dual_encoder_training has no teacher"):
        no_unlabeled_without_teacher(data, "dual_encoder_training")
    no_unlabeled_without_teacher(RankingDataParams(train=source), "dual_encoder_training")
