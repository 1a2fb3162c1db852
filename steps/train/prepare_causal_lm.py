import tempfile
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.device import require_cuda
from finetune.models.causal import base_model_directory
from finetune.models.directory import ModelDirectory
from finetune.models.sources import count_parameters, pretrained_kwargs
from finetune.params import CausalModelSpec
from steps.metadata import record


@step
def prepare_causal_lm(
    model: CausalModelSpec,
    train_data: pd.DataFrame,
    quantize_4bit: bool = False,
    model_fingerprints: dict[str, str] | None = None,  # cache key only (fingerprint_models): unused here
) -> Annotated[ModelDirectory, ArtifactConfig(name="base_model_dir", artifact_type=ArtifactType.MODEL)]:
    """The starting model as a directory artifact: a tiny model built with a BPE tokenizer trained on the training
    text, a local directory, or a hub snapshot at its pinned revision. Training and the few-shot baseline read it.

    ``quantize_4bit`` (QLoRA) fails here, before any model is built or fetched, when there is no CUDA GPU.
    """
    if quantize_4bit:
        require_cuda("QLoRA (4-bit NF4 quantisation with bitsandbytes)")
    columns = ["text"] if "text" in train_data.columns else ["prompt", "response"]
    texts = [t for c in columns for t in train_data[c].tolist()]
    path, description = base_model_directory(model, tempfile.mkdtemp(prefix="base_lm_"), texts)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    trusted = getattr(model, "trust_remote_code", False)
    with torch.device("meta"):  # shapes only: counting a 7B model must not allocate its weights
        config = AutoConfig.from_pretrained(path, **pretrained_kwargs(trusted, weights=False))
        num_parameters = count_parameters(AutoModelForCausalLM.from_config(config, trust_remote_code=trusted))
    record({"base_model": description, "num_parameters": num_parameters})
    return ModelDirectory(path, "causal_lm", description, num_parameters)
