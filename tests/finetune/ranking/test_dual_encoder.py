"""Dual encoders: golden loss values, dataset layouts, training that learns, dense evaluation on a fake encoder."""

import math

import pandas as pd
import pytest
import torch

from finetune.params import DualEncoderParams, RankingEvalParams, TinyBertModel, TrainingParams
from finetune.ranking import dual_encoder as de
from finetune.ranking.cross_encoder import PAIR_COLUMNS

TINY = TinyBertModel(vocab_size=150)
FAST = TrainingParams(max_steps=6, per_device_batch_size=4, learning_rate=1e-3, warmup_ratio=0.0, max_length=32,
                      logging_steps=1, device="cpu", precision="fp32")


def _groups(n_groups=8, negatives=2, teacher=True) -> pd.DataFrame:
    rows = []
    for g in range(n_groups):
        query = f"capital city number {g}"
        rows.append(dict(group=g, qid=str(g), query=query, pid=f"p{g}", passage=f"the capital city {g} is big",
                         grade=1, role="positive"))
        rows += [dict(group=g, qid=str(g), query=query, pid=f"n{g}_{i}", passage=f"a river {g} {i} flows south",
                      grade=0, role="negative") for i in range(negatives)]
    frame = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    if teacher:
        frame["teacher_score"] = [3.0 if r == "positive" else 1.0 for r in frame["role"]]
    return frame


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from finetune.models.sources import build_tiny_bert

    texts = _groups()["query"].tolist() + _groups()["passage"].tolist()
    return build_tiny_bert(TINY, tmp_path_factory.mktemp("tiny"), texts)


def test_margin_mse_golden_value(tiny_base):
    """Dot product: q=(1,0), p+=(2,0), p1=(0,1), p2=(1,1) → student scores 2, 0, 1 → margins 2, 1.

    Teacher scores (3, 1, 2.5) → margins 2, 0.5. MSE = ((2−2)² + (1−0.5)²) / 2 = 0.25 / 2 = 0.125.
    """
    params = DualEncoderParams(similarity="dot", loss="margin_mse")
    loss = de.build_loss(de.build_dual_encoder(tiny_base, params), params)
    embeddings = [torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]]),
                  torch.tensor([[1.0, 1.0]])]
    value = loss.compute_loss_from_embeddings(embeddings, torch.tensor([[3.0, 1.0, 2.5]]))
    assert value.item() == pytest.approx(0.125)


def test_kl_golden_value(tiny_base):
    """Student scores (ln 4, 0, 0) → softmax (4/6, 1/6, 1/6); teacher scores (0, 0, 0) → (1/3, 1/3, 1/3).

    KL(teacher ‖ student) = 1/3·ln((1/3)/(2/3)) + 2·1/3·ln((1/3)/(1/6)) = (−ln 2 + 2 ln 2)/3 = ln 2 / 3 ≈ 0.2310.
    """
    params = DualEncoderParams(similarity="dot", loss="kl")
    loss = de.build_loss(de.build_dual_encoder(tiny_base, params), params)
    embeddings = [torch.tensor([[1.0, 0.0]]), torch.tensor([[math.log(4), 0.0]]), torch.tensor([[0.0, 1.0]]),
                  torch.tensor([[0.0, 0.0]])]
    value = loss.compute_loss_from_embeddings(embeddings, torch.zeros(1, 3))
    assert value.item() == pytest.approx(math.log(2) / 3, rel=1e-5)


def test_mnrl_scale_follows_similarity():
    assert DualEncoderParams(similarity="cosine").mnrl_scale == 20.0
    assert DualEncoderParams(similarity="dot").mnrl_scale == 1.0
    assert DualEncoderParams(similarity="dot", scale=5.0).mnrl_scale == 5.0


def test_distillation_dataset_layout_drops_short_groups():
    frame = _groups(n_groups=3, negatives=2)
    frame = frame.drop(frame.index[-1])  # group 2 now has one negative only
    dataset = de.to_dataset(frame, "margin_mse")
    assert dataset.column_names == ["query", "positive", "negative_1", "negative_2", "label"]
    assert len(dataset) == 2
    assert dataset[0]["label"] == [3.0, 1.0, 1.0]
    assert dataset[1]["negative_2"] == "a river 1 1 flows south"


def test_teacher_losses_need_teacher_scores():
    with pytest.raises(ValueError, match="learns from teacher scores"):
        de.to_dataset(_groups(teacher=False), "kl")
    assert de.to_dataset(_groups(teacher=False), "mnrl").column_names == [
        "query", "positive", "negative_1", "negative_2"]


def test_embedding_mse_golden_value(tiny_base):
    """Student embedding (1, 2), teacher's (0, 4): MSE over the dimensions = (1² + 2²) / 2 = 2.5."""
    params = DualEncoderParams(similarity="dot", loss="embedding_mse")
    loss = de.build_loss(de.build_dual_encoder(tiny_base, params), params)
    value = loss.compute_loss_from_embeddings([torch.tensor([[1.0, 2.0]])], torch.tensor([[0.0, 4.0]]))
    assert value.item() == pytest.approx(2.5)


def test_embedding_dataset_holds_the_teachers_embedding_of_each_distinct_text(tiny_base):
    """One row per distinct query, then per distinct passage; each label is the teacher's own embedding."""
    params = DualEncoderParams(similarity="cosine")
    teacher = de.build_dual_encoder(tiny_base, params)
    teacher_dir = tiny_base.parent / "embedding_teacher"
    teacher.save_pretrained(str(teacher_dir))
    frame = _groups(n_groups=3, negatives=2)
    dataset = de.embedding_dataset(frame, teacher_dir, device="cpu", max_length=32)
    assert dataset.column_names == ["text", "label"]
    assert dataset["text"][:3] == [f"capital city number {g}" for g in range(3)]
    assert len(dataset) == 3 + 9
    expected = teacher.encode(["a river 1 1 flows south"], convert_to_tensor=True)[0]
    row = dataset["text"].index("a river 1 1 flows south")
    assert torch.allclose(torch.tensor(dataset[row]["label"]), expected, atol=1e-5)
    with pytest.raises(ValueError, match="dual_encoder_distillation"):
        de.to_dataset(frame, "embedding_mse")


@pytest.mark.parametrize("towers", ["shared", "separate"])
def test_training_changes_weights_and_lowers_the_loss(tmp_path, towers):
    """All 8 groups form one batch, so each of the 6 steps sees the same batch and its loss must fall."""
    training = FAST.model_copy(update={"per_device_batch_size": 8, "learning_rate": 3e-4})
    params = DualEncoderParams(model=TINY, towers=towers, pooling="mean", similarity="cosine", training=training)
    result = de.train_dual_encoder(_groups(teacher=False), params, tmp_path)
    losses = [e["loss"] for e in result.log_history]
    assert len(losses) == 6 and losses[-1] < losses[0]
    model = de.load_dual_encoder(result.model_dir, device="cpu")
    assert model.similarity_fn_name == "cosine"
    start = de.build_dual_encoder(tmp_path / "base" / "tiny_bert", params)
    trained = dict(model.named_parameters())
    changed = [n for n, p in start.named_parameters() if not torch.equal(p, trained[n])]
    assert changed
    if towers == "separate":  # two towers from the same start, trained on different columns: they diverge
        query = {n.split("sub_modules.query.", 1)[1]: p for n, p in trained.items() if "sub_modules.query." in n}
        document = {n.split("sub_modules.document.", 1)[1]: p for n, p in trained.items()
                    if "sub_modules.document." in n}
        assert query.keys() == document.keys()
        assert any(not torch.equal(query[n], document[n]) for n in query)
        assert result.num_parameters == 2 * sum(p.numel() for p in query.values())


def test_cls_pooling_takes_the_first_token_and_dot_skips_normalisation(tiny_base):
    model = de.build_dual_encoder(tiny_base, DualEncoderParams(pooling="cls", similarity="dot")).eval()
    transformer = model[0]
    features = model.preprocess(["the capital city 3 is big"])
    with torch.no_grad():
        tokens = transformer(dict(features))["token_embeddings"]
        embedding = model.encode_document(["the capital city 3 is big"], convert_to_tensor=True)
    assert torch.allclose(embedding[0], tokens[0, 0], atol=1e-5)
    assert len(model) == 2  # transformer, pooling: no Normalize for dot products


class BagOfWords:
    """A fake bi-encoder: one dimension per vocabulary word, counts as the embedding, dot product."""

    similarity_fn_name = "dot"

    def __init__(self, vocabulary):
        self.vocabulary = vocabulary

    def _encode(self, texts, **_):
        return torch.tensor([[float(t.split().count(w)) for w in self.vocabulary] for t in texts])

    encode_query = encode_document = _encode


def test_dense_evaluation_on_a_fake_encoder(toy_ranking):
    """Scores are word-overlap counts, so retrieval and reranking are checkable by hand."""
    model = BagOfWords(["capital", "france", "germany", "italy", "spain", "of"])
    first_stage = {"1": {"11": 2.0, "20": 1.0, "18": 0.5}, "2": {"13": 1.0}, "3": {}, "4": {"17": 1.0}}
    result = de.dense_evaluation(model, toy_ranking, first_stage, k=2, depth=2, chunk_size=5, backend="exact")
    # "capital of france" · "paris is the capital city of france" = capital + of + france = 3; passages 12, 14,
    # 16 and 20 ("berlin is the capital of germany", ...) score capital + of = 2: a tie, the lowest pid first.
    assert result.retrieval["1"] == {"10": 3.0, "12": 2.0}
    # Only the first stage's top 2 are rescored: "france exports wine and cheese" = 1, passage 20 = 2.
    assert result.rerank["1"] == {"11": 1.0, "20": 2.0}
    assert result.rerank["3"] == {}
    assert result.passages_encoded == 12


def test_evaluate_dense_names_primary_and_secondary_runs(tmp_path, toy_ranking, monkeypatch):
    model = BagOfWords(["capital", "france", "germany", "italy", "spain", "of"])
    monkeypatch.setattr(de, "load_dual_encoder", lambda *a, **k: model)
    first_stage = {q: {p: 1.0 for p in toy_ranking.corpus} for q in toy_ranking.queries}
    evaluation = RankingEvalParams(rerank_depth=12, metrics=("ndcg@10", "recall@2"))
    from finetune.params import DenseEvalParams

    _, metrics, stats = de.evaluate_dense("unused", toy_ranking, first_stage, "bm25", evaluation,
                                          DenseEvalParams(k=12, backend="exact"))
    # Over the whole 12-passage corpus, retrieval and reranking of a first stage holding every passage agree.
    assert metrics["test_ndcg@10"] == pytest.approx(metrics["rerank_test_ndcg@10"])
    assert {"bm25_test_ndcg@10", "p_value_test_ndcg@10", "p_value_rerank_test_recall@2"} <= metrics.keys()
    assert stats["passages_encoded"] == 12.0
