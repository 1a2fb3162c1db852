import tempfile
from pathlib import Path
from typing import Annotated

from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from finetune.data.tokenized import TokenizedDataset
from finetune.generation.training import train_sft
from finetune.models.directory import ModelDirectory
from finetune.params import LocalModel, SftParams
from steps.metadata import record


@step
def train_sft_model(
    base_model_dir: ModelDirectory,
    tokenized_train: TokenizedDataset,
    tokenized_validation: TokenizedDataset,
    sft: SftParams,
) -> tuple[
    Annotated[ModelDirectory, ArtifactConfig(name="model_dir", artifact_type=ArtifactType.MODEL)],
    Annotated[list[dict], "training_log"],
    Annotated[dict, "training_stats"],
]:
    """Supervised fine-tuning (TRL SFTTrainer) of the base model with the configured method, on the splits from
    ``tokenize_instructions`` (refused when tokenized with another tokenizer, max_length or masking).

    ``training_stats``: trainable/total parameters, peak memory, wall time, tokens/s, validation loss/perplexity.
    """
    params = sft.model_copy(update={"model": LocalModel(path=Path(base_model_dir.path))})
    result = train_sft(tokenized_train, tokenized_validation, None, params, tempfile.mkdtemp(prefix="sft_"))
    stats = {"method": sft.method.name, **result.stats}
    record({**stats, "tokenization": result.tokenization, "base_model": base_model_dir.base_model})
    model_dir = ModelDirectory(result.model_dir, "causal_lm", base_model_dir.base_model, stats["total_parameters"])
    return model_dir, result.log_history, stats
