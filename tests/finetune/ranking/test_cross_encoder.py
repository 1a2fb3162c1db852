import pandas as pd
import pytest
import torch

from finetune.data.types import RankingSet
from finetune.params import CrossEncoderParams, MiningParams, TinyBertModel, TrainingParams
from finetune.ranking.cross_encoder import (
    mine_hard_negatives,
    rerank,
    to_loss_dataset,
    top_candidates,
    train_cross_encoder,
)


@pytest.fixture
def toy_run(toy_ranking):
    """Every passage for every query, scored so that lexical 'capital' distractors rank above the positives."""
    order = ["20", "21", "10", "12", "14", "16", "11", "13", "15", "17", "18", "19"]
    return {q: {pid: float(len(order) - i) for i, pid in enumerate(order)} for q in toy_ranking.queries}


def test_top_candidates_breaks_ties_by_pid():
    assert top_candidates({"q": {"b": 1.0, "a": 1.0, "c": 2.0}}, "q", 2) == ["c", "a"]


def test_mined_negatives_come_from_the_run_and_exclude_positives(toy_ranking, toy_run):
    params = MiningParams(negatives_per_positive=3, depth=5, skip_top=1, positive_min_grade=2)
    pairs = mine_hard_negatives(toy_ranking, toy_run, params)
    assert pairs.groupby("group").size().tolist() == [4, 4, 4, 4]  # 1 positive + 3 negatives, one group a query
    for qid, group in pairs.groupby("qid"):
        pos = group[group.role == "positive"]
        neg = set(group[group.role == "negative"].pid)
        assert pos.pid.tolist() == [{"1": "10", "2": "12", "3": "14", "4": "16"}[qid]]
        allowed = set(top_candidates(toy_run, qid, 5)[1:]) - {pos.pid.iloc[0]}
        assert neg <= allowed and "20" not in neg  # rank 1 skipped


def test_judged_passages_without_text_are_never_trained_on(toy_ranking, toy_run):
    toy_ranking.qrels["1"]["999"] = 3  # judged (kept for evaluation) but absent from the collection
    pairs = mine_hard_negatives(toy_ranking, toy_run, MiningParams(negatives_per_positive=2))
    assert "999" not in set(pairs.pid)


def test_mining_is_seeded_and_independent_of_query_order(toy_ranking, toy_run):
    params = MiningParams(negatives_per_positive=2, depth=8)
    a = mine_hard_negatives(toy_ranking, toy_run, params)
    shuffled = RankingSet("toy", toy_ranking.corpus, dict(reversed(toy_ranking.queries.items())), toy_ranking.qrels)
    b = mine_hard_negatives(shuffled, toy_run, params)
    pd.testing.assert_frame_equal(a, b)
    c = mine_hard_negatives(toy_ranking, toy_run, MiningParams(negatives_per_positive=2, depth=8, seed=5))
    assert not a.equals(c)


def test_max_negative_grade_keeps_partially_relevant_passages_out(toy_ranking, toy_run):
    # 11 negatives per positive = every other passage of the 12-passage toy collection.
    default = mine_hard_negatives(toy_ranking, toy_run, MiningParams(negatives_per_positive=11, positive_min_grade=2))
    assert (default[default.role == "negative"].grade == 1).sum() == 4  # every query's grade-1 passage
    strict = mine_hard_negatives(
        toy_ranking, toy_run, MiningParams(negatives_per_positive=11, positive_min_grade=2, max_negative_grade=0))
    negatives = strict[strict.role == "negative"]
    assert len(negatives) == 40 and (negatives.grade == 0).all()  # 10 a query: the grade-1 passage left out
    with pytest.raises(ValueError, match=r"max_negative_grade \(2\) must be below positive_min_grade \(2\)"):
        MiningParams(positive_min_grade=2, max_negative_grade=2)


def test_too_few_candidates_are_filled_from_the_corpus(toy_ranking):
    run = {q: {} for q in toy_ranking.queries}  # a first stage that found nothing
    pairs = mine_hard_negatives(toy_ranking, run, MiningParams(negatives_per_positive=3, positive_min_grade=2))
    negatives = pairs[pairs.role == "negative"]
    assert len(negatives) == 12
    assert all(toy_ranking.qrels[q].get(p, 0) < 2 for q, p in zip(negatives.qid, negatives.pid, strict=True))


def test_loss_dataset_layouts(toy_ranking, toy_run):
    pairs = mine_hard_negatives(toy_ranking, toy_run, MiningParams(negatives_per_positive=2))
    bce = to_loss_dataset(pairs, "bce")
    assert bce.column_names == ["query", "passage", "label"] and sum(bce["label"]) == (pairs.role == "positive").sum()
    listwise = to_loss_dataset(pairs, "lambda")
    assert listwise.column_names == ["query", "docs", "labels"]
    graded = mine_hard_negatives(toy_ranking, toy_run, MiningParams(negatives_per_positive=11, positive_min_grade=2))
    graded_lists = to_loss_dataset(graded, "lambda")
    for row, (_, group) in zip(graded_lists, graded.groupby("group"), strict=True):
        assert row["labels"] == group.grade.astype(float).tolist()
        assert row["labels"][0] == 2.0 and sorted(row["labels"][1:]) == [0.0] * 10 + [1.0]  # grade-1 negative keeps 1
    mnrl = to_loss_dataset(pairs, "mnrl")
    assert mnrl.column_names == ["query", "positive", "negative_1", "negative_2"]
    with pytest.raises(ValueError, match="no training pairs"):
        to_loss_dataset(pairs.iloc[0:0], "bce")


def _params(loss: str, steps: int = 30) -> CrossEncoderParams:
    return CrossEncoderParams(
        model=TinyBertModel(hidden_size=32, num_layers=2, num_heads=2, vocab_size=200),
        loss=loss,
        training=TrainingParams(max_steps=steps, per_device_batch_size=8, learning_rate=3e-3, warmup_ratio=0.0,
                                logging_steps=5, max_length=32, device="cpu", precision="fp32", seed=0),
    )


@pytest.mark.parametrize("loss", ["bce", "lambda", "mnrl"])
def test_training_fits_a_fixed_set_and_changes_parameters(toy_ranking, toy_run, tmp_path, loss):
    from safetensors.torch import load_file

    pairs = mine_hard_negatives(toy_ranking, toy_run, MiningParams(negatives_per_positive=3, positive_min_grade=2))
    result = train_cross_encoder(pairs, _params(loss, steps=40), tmp_path)
    before = load_file(tmp_path / "base" / "tiny_bert" / "model.safetensors")
    after = load_file(result.model_dir / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after.get(k, before[k]))]
    assert len(changed) > len(before) // 2
    losses = [h["loss"] for h in result.log_history]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    # The model now ranks each query's positive first among its mined candidates.
    reranked = rerank(result.model_dir, toy_ranking, toy_run, depth=12, device="cpu")
    positives = {"1": "10", "2": "12", "3": "14", "4": "16"}
    mrr = sum(1 / (1 + sorted(reranked.run[q], key=lambda p: -reranked.run[q][p]).index(p))
              for q, p in positives.items()) / 4
    assert mrr > 0.5
    assert result.num_parameters > 0 and result.train_examples > 0


def test_rerank_scores_only_the_top_depth(toy_ranking, toy_run, tmp_path):
    pairs = mine_hard_negatives(toy_ranking, toy_run, MiningParams(negatives_per_positive=1))
    result = train_cross_encoder(pairs, _params("bce", steps=2), tmp_path)
    reranked = rerank(result.model_dir, toy_ranking, toy_run, depth=3, device="cpu")
    assert reranked.pairs_scored == 12 and reranked.docs_per_second > 0
    for qid in toy_ranking.queries:
        assert set(reranked.run[qid]) == set(top_candidates(toy_run, qid, 3))
