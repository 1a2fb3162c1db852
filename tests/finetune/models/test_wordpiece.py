"""The tiny BERT's WordPiece tokenizer is trained deterministically (tokenizers' own trainer is not: #1794)."""

import hashlib
import json
import os
import subprocess
import sys

from finetune.models.sources import SPECIAL_TOKENS, train_wordpiece_tokenizer

# Many words of equal frequency, so BPE meets ties between equally frequent merges at almost every step.
TEXTS = [f"{a}{b} {b}{a}ia" for a in ("vel", "dor", "kar", "sun") for b in ("mont", "rix", "tal", "ven")]

VOCAB_DIGEST = """
import hashlib, json, sys
from finetune.models.sources import train_wordpiece_tokenizer
texts = json.loads(sys.argv[1])
vocab = train_wordpiece_tokenizer(texts, 120, 32).get_vocab()
print(hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest())
"""


def _digest(vocab: dict) -> str:
    return hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest()


def test_same_vocabulary_in_this_process_and_in_others():
    """tokenizers' WordPieceTrainer numbers the ``##`` pieces in hash-map order, which differs per call and per
    process; two calls here and two fresh processes (different hash seeds) must all learn the same vocabulary."""
    first = train_wordpiece_tokenizer(TEXTS, 120, 32).get_vocab()
    assert train_wordpiece_tokenizer(TEXTS, 120, 32).get_vocab() == first
    digests = set()
    for hash_seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", VOCAB_DIGEST, json.dumps(TEXTS)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": hash_seed}, timeout=300, check=True)
        digests.add(done.stdout.strip())
    assert digests == {_digest(first)}


def test_vocabulary_is_wordpiece_shaped_and_round_trips():
    """Specials first; every character seen inside a word exists as a ``##`` piece and every first character as a
    plain one; the 32 training words (16 pairs × 2 orders) merged to whole tokens (91 of the 120 allowed: no pair
    is left to merge); an unseen word splits into a plain piece and ``##`` pieces and decodes back."""
    tokenizer = train_wordpiece_tokenizer(TEXTS, 120, 32)
    vocab = tokenizer.get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4] and len(vocab) == 91
    words = {word for text in TEXTS for word in text.split()}
    assert {"##" + c for word in words for c in word[1:]} <= set(vocab)
    assert {word[0] for word in words} <= set(vocab)
    assert words <= set(vocab)
    pieces = tokenizer.tokenize("dormontia")
    assert len(pieces) > 1 and not pieces[0].startswith("##") and all(p.startswith("##") for p in pieces[1:])
    ids = tokenizer("Velmont dormontia")["input_ids"]
    assert ids[0] == vocab["[CLS]"] and ids[1] == vocab["velmont"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "velmont dormontia"
