# No `from __future__ import annotations`: ZenML's accelerate wrapper reads the parameter types (str, Path) from
# the live annotations to build its command line.
import json
import tempfile
from pathlib import Path
from typing import Annotated

from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType
from zenml.integrations.huggingface.steps import run_with_accelerate

from finetune.data.tokenized import read_tokenized
from finetune.generation.training import train_sft
from finetune.models.directory import ModelDirectory
from finetune.params import LocalModel, MultiGpuSftParams
from steps.metadata import record


# One process per visible CUDA GPU (the step's ResourceSettings.gpu_count on a remote stack), data-parallel
# through TRL's SFTTrainer; see train_cross_encoder_multi_gpu.
@run_with_accelerate
@step
def train_sft_model_multi_gpu(sft_inputs: Path, sft_json: str) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
    Annotated[dict, "training_stats"],
]:
    """``train_sft_model`` on every visible GPU (full fine-tuning or a PEFT method; QLoRA is single-GPU only).

    Args:
        sft_inputs: Directory from ``stage_sft_inputs`` (base model, tokenized train and validation splits).
        sft_json: ``MultiGpuSftParams`` as JSON (QLoRA is refused there); per_device_batch_size applies per GPU.
    """
    staged = Path(sft_inputs)
    sft = MultiGpuSftParams.model_validate_json(sft_json)
    base = json.loads((staged / "base_model.json").read_text())
    params = sft.model_copy(update={"model": LocalModel(path=staged / "base_model")})
    result = train_sft(read_tokenized(staged / "train"), read_tokenized(staged / "validation"), None, params,
                       tempfile.mkdtemp(prefix="sft_"))
    stats = {"method": sft.method.name, **result.stats}
    # The accelerate processes run outside ZenML's step context: this goes to the step log, not to metadata.
    record({**stats, "base_model": base["base_model"]})
    model_dir = ModelDirectory(result.model_dir, "causal_lm", base["base_model"], stats["total_parameters"])
    return model_dir, result.log_history, stats
