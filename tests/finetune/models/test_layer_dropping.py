"""Layer dropping keeps exactly the chosen layers (weights compared tensor by tensor) and renumbers them."""

import json

import pytest
import torch
from safetensors.torch import load_file

from finetune.models.layer_dropping import drop_layers, every_other_layer, num_layers
from finetune.models.sources import build_tiny_bert
from finetune.params import TinyBertModel

TEXTS = ["the capital of france is paris", "dogs bark at the postman", "rivers flow into the sea"] * 3


@pytest.fixture(scope="module")
def four_layer_bert(tmp_path_factory):
    return build_tiny_bert(TinyBertModel(num_layers=4, vocab_size=120), tmp_path_factory.mktemp("bert4"), TEXTS)


def test_every_other_layer():
    assert every_other_layer(6) == (0, 2, 4)
    assert every_other_layer(4) == (0, 2)
    assert every_other_layer(1) == (0,)


def test_kept_layers_are_copied_exactly_and_renumbered(four_layer_bert, tmp_path):
    kept = drop_layers(four_layer_bert, tmp_path / "student", keep=(1, 3))
    assert kept == (1, 3)
    old = load_file(str(four_layer_bert / "model.safetensors"))
    new = load_file(str(tmp_path / "student" / "model.safetensors"))
    for key, tensor in new.items():
        if ".encoder.layer.0." in key:
            assert torch.equal(tensor, old[key.replace(".layer.0.", ".layer.1.")])
        elif ".encoder.layer.1." in key:
            assert torch.equal(tensor, old[key.replace(".layer.1.", ".layer.3.")])
        else:  # embeddings, pooler, classifier: unchanged
            assert torch.equal(tensor, old[key])
    layer_keys = {k for k in old if ".encoder.layer." in k}
    assert len(new) == len(old) - len(layer_keys) // 2
    assert not any(".encoder.layer.2." in k or ".encoder.layer.3." in k for k in new)
    assert json.loads((tmp_path / "student" / "config.json").read_text())["num_hidden_layers"] == 2
    assert (tmp_path / "student" / "tokenizer.json").is_file()
    assert num_layers(tmp_path / "student") == 2


def test_the_shallow_copy_loads_and_computes_like_the_kept_layers(four_layer_bert, tmp_path):
    """The 2-layer copy equals the 4-layer model with layers 1 and 3 removed from its ModuleList."""
    from transformers import AutoModel

    drop_layers(four_layer_bert, tmp_path / "student", keep=(1, 3))
    full = AutoModel.from_pretrained(four_layer_bert).eval()
    full.encoder.layer = torch.nn.ModuleList([full.encoder.layer[1], full.encoder.layer[3]])
    small = AutoModel.from_pretrained(tmp_path / "student").eval()
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    with torch.no_grad():
        assert torch.allclose(small(input_ids=ids).last_hidden_state, full(input_ids=ids).last_hidden_state)


def test_default_is_every_other_layer(four_layer_bert, tmp_path):
    assert drop_layers(four_layer_bert, tmp_path / "student") == (0, 2)


@pytest.mark.parametrize("keep", [(), (2, 1), (0, 4), (1, 1), (-1,)])
def test_bad_layer_lists_are_rejected(four_layer_bert, tmp_path, keep):
    with pytest.raises(ValueError, match="keep_layers"):
        drop_layers(four_layer_bert, tmp_path / "student", keep=keep)


def test_a_directory_without_bert_weights_is_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json with num_hidden_layers"):
        drop_layers(tmp_path / "empty", tmp_path / "student", keep=(0,))


def test_two_tower_models_lose_layers_in_both_towers(tmp_path):
    """A Router bi-encoder keeps a config + weights pair per tower; both are cut."""
    from finetune.params import DualEncoderParams
    from finetune.ranking.dual_encoder import build_dual_encoder

    base = build_tiny_bert(TinyBertModel(num_layers=4, vocab_size=120), tmp_path / "bert4", TEXTS)
    build_dual_encoder(base, DualEncoderParams(towers="separate")).save_pretrained(str(tmp_path / "two_towers"))
    assert drop_layers(tmp_path / "two_towers", tmp_path / "student", keep=(0, 3)) == (0, 3)
    configs = sorted((tmp_path / "student").rglob("config.json"))
    layers = {c.parent.name: json.loads(c.read_text()).get("num_hidden_layers") for c in configs}
    assert {k: v for k, v in layers.items() if v is not None} == {"query_0_Transformer": 2,
                                                                  "document_0_Transformer": 2}
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="keep_layers"):
        drop_layers(tmp_path / "two_towers", tmp_path / "bad", keep=(0, 4))
    assert not (tmp_path / "bad").exists()  # nothing is written when the layer list is wrong


@pytest.mark.parametrize("kind", ["tiny_gpt2", "tiny_llama"])
def test_decoder_layers_are_dropped_and_the_student_computes_with_exactly_the_kept_layers(kind, tmp_path):
    """A 4-layer causal LM keeps layers 1 and 3: the copy loads as a 2-layer model whose logits equal those of the
    original run through layers 1 and 3 only (same embeddings, final norm and tied head)."""
    from transformers import AutoModelForCausalLM

    from finetune.models.causal import build_tiny_causal_lm
    from finetune.params import TinyGpt2Model, TinyLlamaModel

    spec = (TinyGpt2Model if kind == "tiny_gpt2" else TinyLlamaModel)(num_layers=4, hidden_size=32, vocab_size=300)
    source = build_tiny_causal_lm(spec, tmp_path / "teacher", TEXTS)
    assert num_layers(source) == 4
    assert drop_layers(source, tmp_path / "student", keep=(1, 3)) == (1, 3)
    assert num_layers(tmp_path / "student") == 2
    teacher = AutoModelForCausalLM.from_pretrained(source).eval()
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "student").eval()
    layers = teacher.transformer.h if kind == "tiny_gpt2" else teacher.model.layers
    kept = torch.nn.ModuleList([layers[1], layers[3]])
    for index, layer in enumerate(kept):
        (layer.attn if kind == "tiny_gpt2" else layer.self_attn).layer_idx = index
    if kind == "tiny_gpt2":
        teacher.transformer.h = kept
    else:
        teacher.model.layers = kept
    teacher.config.num_hidden_layers = 2
    ids = torch.tensor([[5, 17, 42, 8, 99, 3]])
    with torch.no_grad():
        assert torch.allclose(student(input_ids=ids).logits, teacher(input_ids=ids).logits, atol=1e-6)
