"""Initialise a shallower student from a deeper model by keeping some of its transformer layers.

DistilBERT was initialised from BERT by taking every other layer; this does the same on a saved model directory,
at the level of the weight files: the kept layers are renumbered 0..n-1, everything else (embeddings, pooler,
classification or LM head, tokenizer, sentence-transformers module configs) is copied unchanged. It works for any
directory in which ``config.json`` + ``model.safetensors`` pairs sit: BERT-style encoders (a plain transformers
model, a sentence-transformers bi-encoder, a two-tower Router model with one pair per tower, a sentence-transformers
CrossEncoder) and decoder-only causal LMs (Llama-style ``model.layers.N``, GPT-2-style ``transformer.h.N``).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

# "bert.encoder.layer.3.attention..." or "encoder.layer.3...." (BertModel saved without the "bert." prefix),
# "model.layers.3.self_attn..." (Llama, SmolLM2) and "transformer.h.3.attn..." (GPT-2).
_LAYER_KEY = re.compile(
    r"^(?P<prefix>(?:.*\.)?(?:encoder\.layer|model\.layers|transformer\.h)\.)(?P<index>\d+)(?P<rest>\..*)$")
# The config key that holds the layer count: BERT/Llama style, then GPT-2 style.
_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer")
# Per-layer lists some configs carry (Llama/Qwen in transformers 5): subset with the kept layers.
_PER_LAYER_KEYS = ("layer_types",)


def _layer_count_key(config: dict) -> str | None:
    return next((key for key in _LAYER_COUNT_KEYS if key in config), None)


def every_other_layer(num_layers: int) -> tuple[int, ...]:
    """Layers 0, 2, 4, ... (6 layers → 0, 2, 4), as DistilBERT kept from BERT."""
    return tuple(range(0, num_layers, 2))


def num_layers(model_dir: str | Path) -> int:
    """The layer count (``num_hidden_layers`` or GPT-2's ``n_layer``) of the first config found in ``model_dir``."""
    for config_path in _weight_configs(Path(model_dir)):
        config = json.loads(config_path.read_text())
        return int(config[_layer_count_key(config)])
    raise ValueError(f"{model_dir}: no config.json with num_hidden_layers next to a model.safetensors")


def _weight_configs(root: Path) -> list[Path]:
    found = []
    for config in sorted(root.rglob("config.json")):
        if (config.parent / "model.safetensors").is_file() and _layer_count_key(json.loads(config.read_text())):
            found.append(config)
    return found


def drop_layers(source: str | Path, target: str | Path, keep: Sequence[int] | None = None) -> tuple[int, ...]:
    """Copy ``source`` to ``target`` keeping only the transformer layers ``keep`` (default: every other one).

    Args:
        source: A saved model directory.
        target: Where the shallower copy is written (created; must not exist).
        keep: 0-based layer indices, strictly increasing, each below the model's layer count.

    Returns:
        The kept layer indices.

    Raises:
        ValueError: No single-file weights with a layer count in ``source``, or ``keep`` is empty, unsorted or out
            of range.
    """
    from safetensors.torch import load_file, save_file

    source, target = Path(source), Path(target)
    configs = _weight_configs(source)
    if not configs:
        raise ValueError(f"{source}: no config.json with num_hidden_layers next to a model.safetensors")
    plans = []
    for config_path in configs:  # check every tower before writing anything
        config = json.loads(config_path.read_text())
        total = int(config[_layer_count_key(config)])
        kept = tuple(keep) if keep is not None else every_other_layer(total)
        if not kept or list(kept) != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= total:
            raise ValueError(f"keep_layers {list(kept)}: need strictly increasing indices in 0..{total - 1}")
        plans.append((config_path, config, kept, total))
    shutil.copytree(source, target)
    for config_path, config, kept, total in plans:
        renumber = {old: new for new, old in enumerate(kept)}
        weights = load_file(str(config_path.parent / "model.safetensors"))
        out = {}
        for key, tensor in weights.items():
            match = _LAYER_KEY.match(key)
            if match is None:
                out[key] = tensor
            elif int(match["index"]) in renumber:
                out[f"{match['prefix']}{renumber[int(match['index'])]}{match['rest']}"] = tensor.contiguous()
        relative = config_path.parent.relative_to(source)
        save_file(out, str(target / relative / "model.safetensors"), metadata={"format": "pt"})
        config[_layer_count_key(config)] = len(kept)
        for key in _PER_LAYER_KEYS:
            if isinstance(config.get(key), list) and len(config[key]) == total:
                config[key] = [config[key][i] for i in kept]
        (target / relative / "config.json").write_text(json.dumps(config, indent=2))
    return plans[-1][2]
