import pytest
from pydantic import ValidationError

from finetune.params import CrossEncoderParams, RankingDataParams, RankingEvalParams, TinyBertModel


def test_unknown_key_is_named():
    with pytest.raises(ValidationError) as err:
        RankingDataParams.model_validate({"train": {"kind": "msmarco_files", "colection": "c.tsv",
                                                    "queries": "q.tsv", "qrels": "r.txt"}})
    text = str(err.value)
    assert "colection" in text and "Extra inputs are not permitted" in text


def test_wrong_type_is_named():
    with pytest.raises(ValidationError) as err:
        CrossEncoderParams.model_validate({"training": {"per_device_batch_size": "many"}})
    assert "training.per_device_batch_size" in str(err.value)


def test_source_kind_selects_the_model():
    params = RankingDataParams.model_validate({"train": {"kind": "demo", "num_queries": 10}})
    assert params.train.kind == "demo" and params.train.num_queries == 10 and params.eval is None


def test_hub_source_needs_a_revision():
    with pytest.raises(ValidationError, match="revision"):
        RankingDataParams.model_validate({"train": {"kind": "hub"}})


def test_triples_need_a_separate_eval_source():
    with pytest.raises(ValidationError, match="separate eval source"):
        RankingDataParams.model_validate({"train": {"kind": "triples", "path": "t.tsv"}})


def test_primary_metric_must_be_computed():
    with pytest.raises(ValidationError, match="primary_metric"):
        RankingEvalParams(metrics=("mrr@10",), primary_metric="ndcg@10")


def test_params_are_frozen():
    params = CrossEncoderParams()
    with pytest.raises(ValidationError):
        params.loss = "mnrl"


def test_tiny_heads_must_divide_hidden():
    with pytest.raises(ValidationError, match="divisible"):
        TinyBertModel(hidden_size=30, num_heads=4)


def test_method_comparison_learning_rates_override_one_method_each():
    from finetune.params import MethodComparisonParams

    params = MethodComparisonParams.model_validate({
        "model": {"kind": "tiny_gpt2"}, "methods": [{"name": "full"}, {"name": "adalora"}],
        "training": {"max_steps": 4, "learning_rate": 2e-4}, "learning_rates": {"adalora": 1e-3}})
    full, adalora = (params.sft_params(m) for m in params.methods)
    assert full.training.learning_rate == 2e-4 and adalora.training.learning_rate == 1e-3
    assert full.training.max_steps == adalora.training.max_steps == 4  # the same budget otherwise
    with pytest.raises(ValidationError, match=r"learning_rates: \['lora'\] not among the compared methods "
                                              r"\['full', 'adalora'\]"):
        MethodComparisonParams.model_validate({"model": {"kind": "tiny_gpt2"},
                                               "methods": [{"name": "full"}, {"name": "adalora"}],
                                               "training": {"max_steps": 4}, "learning_rates": {"lora": 1e-3}})
    with pytest.raises(ValidationError, match="learning_rates.full"):
        MethodComparisonParams.model_validate({"model": {"kind": "tiny_gpt2"},
                                               "methods": [{"name": "full"}, {"name": "adalora"}],
                                               "training": {"max_steps": 4}, "learning_rates": {"full": 0}})
