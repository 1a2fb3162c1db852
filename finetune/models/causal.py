"""Causal language models: hub ids, local directories, and tiny GPT-2 / Llama-style models built from a config.

Tiny models get a byte-level BPE tokenizer trained offline on the task's own text (the ``tokenizers`` library),
so tests and demos never reach a hub. Trained models are saved so that ``load_causal_lm`` reads them back with no
other input: full fine-tuning and LoRA / AdaLoRA (merged into the weights) as a plain model directory; prompt-learning
adapters (prefix, prompt, P-tuning, multitask prompt tuning), which cannot be merged, as the adapter at the top of
the directory with the frozen base model under ``base/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from finetune.models.sources import (
    ResolvedModel,
    check_safetensors,
    hub_snapshot,
    pretrained_kwargs,
    warn_remote_code,
)
from finetune.params import GgufModel, HubModel, LocalModel, TinyGpt2Model, TinyLlamaModel

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
BASE_SUBDIR = "base"
ADAPTER_CONFIG = "adapter_config.json"
DEFAULT_TASK_FILE = "default_task.json"

# Plain-text chat layout for the tiny tokenizer, so chat ``messages`` data goes through ``apply_chat_template``
# exactly as it does with a hub model's own template.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# LoRA targets per ``config.model_type``: the attention projections, as in the LoRA and QLoRA papers' setups.
LORA_TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn",),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mixtral": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj"),
    "gpt_neox": ("query_key_value",),
}


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int):
    """Train a GPT-2-style byte-level BPE tokenizer on ``texts`` (offline, deterministic for the same input).

    Every byte is in the initial alphabet, so no text is ever out of vocabulary. ``<|endoftext|>`` is BOS, EOS
    and UNK as in GPT-2; a separate ``<|pad|>`` keeps padding distinguishable from a real end of text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=max_length,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def build_tiny_causal_lm(spec: TinyGpt2Model | TinyLlamaModel, out_dir: str | Path, texts: Iterable[str]) -> Path:
    """Write a randomly initialised tiny causal LM (seeded) and its offline-trained BPE tokenizer to ``out_dir``.

    The same spec and texts give byte-identical weights, so tests and benchmarks can compare runs.

    Returns:
        ``out_dir`` as a Path, loadable with ``load_causal_lm`` or ``AutoModelForCausalLM``.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = train_bpe_tokenizer(texts, spec.vocab_size, spec.max_position_embeddings)
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    torch.manual_seed(spec.seed)
    if isinstance(spec, TinyGpt2Model):
        config = GPT2Config(
            n_embd=spec.hidden_size, n_layer=spec.num_layers, n_head=spec.num_heads,
            n_positions=spec.max_position_embeddings, **ids,
        )
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_heads, max_position_embeddings=spec.max_position_embeddings, **ids,
        )
        model = LlamaForCausalLM(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def resolve_causal_model(
    spec: HubModel | LocalModel | GgufModel | TinyGpt2Model | TinyLlamaModel,
    workdir: str | Path,
    texts: Iterable[str] | None = None,
) -> ResolvedModel:
    """Turn a causal-LM spec into a loadable reference, building a tiny model (or de-quantising a GGUF file) under
    ``workdir`` when needed.

    Raises:
        ValueError: A local path without ``config.json`` or with an unreadable ``*.safetensors`` file, or a tiny
            model without texts.
    """
    if isinstance(spec, HubModel):
        return ResolvedModel(spec.id, spec.revision, f"hub {spec.id}@{spec.revision}", warn_remote_code(spec))
    if isinstance(spec, LocalModel):
        if not (spec.path / "config.json").is_file() and not (spec.path / ADAPTER_CONFIG).is_file():
            raise ValueError(f"{spec.path}: not a model directory (no config.json)")
        check_safetensors(spec.path)
        return ResolvedModel(str(spec.path), None, f"local {spec.path}", warn_remote_code(spec))
    if isinstance(spec, GgufModel):
        from finetune.models.gguf import convert_gguf, gguf_file

        path = convert_gguf(spec, Path(workdir) / "gguf")
        return ResolvedModel(str(path), None, f"gguf {gguf_file(spec)} ({spec.dtype})")
    if texts is None:
        raise ValueError(f"a {spec.kind} model needs texts to train its tokenizer on")
    path = build_tiny_causal_lm(spec, Path(workdir) / spec.kind, texts)
    return ResolvedModel(str(path), None, f"{spec.kind} hidden={spec.hidden_size} layers={spec.num_layers} "
                                          f"seed={spec.seed}")


def base_model_directory(
    spec: HubModel | LocalModel | GgufModel | TinyGpt2Model | TinyLlamaModel,
    workdir: str | Path,
    texts: Iterable[str] | None = None,
) -> tuple[Path, str]:
    """A local directory holding the starting model, so training and baselines read the same files.

    Tiny models are built under ``workdir``; GGUF files are de-quantised into ``workdir/gguf``; local paths are used
    as they are; hub models are fetched at their pinned
    revision with ``snapshot_download`` (weights in safetensors, config and tokenizer files, and the repository's
    ``*.py`` files only with ``trust_remote_code``; the local cache serves offline runs).

    Returns:
        ``(directory, one-line description)``.
    """
    resolved = resolve_causal_model(spec, workdir, texts)
    if not isinstance(spec, HubModel):
        return Path(resolved.name_or_path), resolved.description
    return hub_snapshot(spec, resolved.trust_remote_code), resolved.description


def lora_target_modules(model_type: str) -> list[str]:
    """LoRA target module names for an architecture (``config.model_type``).

    Raises:
        ValueError: An architecture with no known mapping; the message says how to name the modules instead.
    """
    if model_type not in LORA_TARGET_MODULES:
        raise ValueError(
            f"no default LoRA target modules for model_type '{model_type}' (known: {sorted(LORA_TARGET_MODULES)}); "
            "set method.target_modules in the config"
        )
    return list(LORA_TARGET_MODULES[model_type])


def load_pretrained_causal_lm(resolved: ResolvedModel, quantize_4bit: bool = False, compute_dtype=None):
    """Load the starting model and tokenizer for training from a resolved reference.

    Args:
        resolved: From ``resolve_causal_model`` (hub ids load at their pinned revision).
        quantize_4bit: Load the weights as 4-bit NF4 with double quantisation (QLoRA); needs CUDA and bitsandbytes.
        compute_dtype: The torch dtype 4-bit matmuls compute in (bf16 on Ampere+).

    Returns:
        ``(model, tokenizer)``; the tokenizer always has a pad token (EOS when the model ships none).
    """
    from transformers import AutoModelForCausalLM

    kwargs = resolved.model_kwargs()
    if quantize_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(resolved.name_or_path, **kwargs)
    return model, load_causal_tokenizer(resolved)


def load_causal_tokenizer(resolved: ResolvedModel):
    """The tokenizer training uses (a pad token always set: EOS when the model ships none); the tokenize steps load
    it the same way, without the weights."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolved.name_or_path, **resolved.tokenizer_kwargs())
    _ensure_pad_token(tokenizer)
    return tokenizer


def save_causal_lm(model, tokenizer, out_dir: str | Path) -> Path:
    """Save a trained model so that ``load_causal_lm(out_dir)`` needs nothing else.

    LoRA / AdaLoRA adapters are merged into the weights (a plain model directory, no PEFT at inference).
    Prompt-learning adapters cannot be merged: the adapter is saved at the top of ``out_dir`` and the frozen base
    model with the tokenizer under ``out_dir/base``.
    """
    from peft import PeftModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PeftModel):
        if model.active_peft_config.is_prompt_learning:
            base = model.get_base_model()
            base.save_pretrained(out / BASE_SUBDIR)
            tokenizer.save_pretrained(out / BASE_SUBDIR)
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            if getattr(model, "default_task_id", None) is not None:
                (out / DEFAULT_TASK_FILE).write_text(json.dumps({"task_id": model.default_task_id}))
            return out
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def load_causal_lm(model_dir: str | Path, device: str | None = None):
    """Load a saved causal LM directory: a plain model, or a prompt-learning adapter with its base under ``base/``.

    Args:
        model_dir: A directory written by ``save_causal_lm``, ``build_tiny_causal_lm`` or any ``save_pretrained``.
        device: Move the model there (default: leave it on the CPU).

    Returns:
        ``(model, tokenizer)`` with the model in eval mode; a ``PeftModel`` for prompt-learning adapters.

    Raises:
        ValueError: The directory has neither ``config.json`` nor an adapter with its base model, or holds an
            unreadable ``*.safetensors`` file.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model_dir)
    check_safetensors(path)
    if (path / ADAPTER_CONFIG).is_file():
        from peft import PeftModel

        base_dir = path / BASE_SUBDIR
        if not (base_dir / "config.json").is_file():
            raise ValueError(f"{path}: adapter without its base model (no {BASE_SUBDIR}/config.json)")
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, **pretrained_kwargs()), path)
        if (path / DEFAULT_TASK_FILE).is_file():
            use_default_task(model, json.loads((path / DEFAULT_TASK_FILE).read_text())["task_id"])
    elif (path / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(path, **pretrained_kwargs())
    else:
        raise ValueError(f"{path}: not a causal LM directory (no config.json or {ADAPTER_CONFIG})")
    tokenizer = AutoTokenizer.from_pretrained(path, **pretrained_kwargs(weights=False))
    _ensure_pad_token(tokenizer)
    if device is not None:
        model.to(device)
    model.eval()
    return model, tokenizer


def use_default_task(peft_model, task_id: int) -> None:
    """Make a multitask-prompt-tuning model use ``task_id`` whenever a caller passes no ``task_ids``.

    PEFT's multitask prompt encoder refuses ``task_ids=None``, and neither the trainers' collators nor generic
    evaluation code pass task ids; a forward pre-hook on the prompt encoder fills them in for training, scoring and
    ``generate`` alike. The id is saved next to the adapter (``default_task.json``) and restored on load.
    """
    import torch

    def fill_task_ids(module, args):
        indices, task_ids = args[0], args[1] if len(args) > 1 else None
        if task_ids is None:
            task_ids = torch.full((indices.shape[0],), task_id, dtype=torch.long, device=indices.device)
        return indices, task_ids

    encoder = peft_model.prompt_encoder[peft_model.active_adapter]
    encoder.register_forward_pre_hook(fill_task_ids)
    peft_model.default_task_id = task_id


def _ensure_pad_token(tokenizer) -> None:
    # GPT-2 and Llama ship without a pad token; batching needs one, and EOS is the usual stand-in.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
