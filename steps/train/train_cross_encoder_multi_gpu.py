# No `from __future__ import annotations`: ZenML's accelerate wrapper reads the parameter types (str, Path) from
# the live annotations to build its command line.
import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType
from zenml.integrations.huggingface.steps import run_with_accelerate

from finetune.models.directory import ModelDirectory
from finetune.params import CrossEncoderParams
from finetune.ranking.cross_encoder import train_cross_encoder
from steps.metadata import record


# `accelerate launch` without --num_processes starts one process per visible CUDA GPU, which is the step's
# ResourceSettings.gpu_count on Kubernetes / SkyPilot / Vertex (configs/gpu/*_multi_gpu.yaml), and switches to
# multi-GPU (DDP through the Trainer) when there are two or more. With no GPU it runs one process.
@run_with_accelerate
@step
def train_cross_encoder_multi_gpu(train_pairs_file: Path, cross_encoder_json: str) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
]:
    """``train_cross_encoder`` on every visible GPU: the same CrossEncoderTrainer, data-parallel under accelerate.

    Args:
        train_pairs_file: Parquet file of the mined pairs (``stage_train_pairs``).
        cross_encoder_json: ``CrossEncoderParams`` as JSON; the per-device batch size applies per GPU, so N GPUs
            take N × per_device_batch_size × gradient_accumulation_steps pairs per update.
    """
    params = CrossEncoderParams.model_validate_json(cross_encoder_json)
    workdir = Path(tempfile.mkdtemp(prefix="cross_encoder_"))
    result = train_cross_encoder(pd.read_parquet(train_pairs_file), params, workdir)
    # The accelerate processes run outside ZenML's step context: this goes to the step log, not to metadata.
    record({"num_parameters": result.num_parameters, "train_seconds": round(result.train_seconds, 2),
            "train_examples": result.train_examples, "device": result.device})
    model_dir = ModelDirectory(result.model_dir, "cross_encoder", result.base_model, result.num_parameters)
    return model_dir, result.log_history
