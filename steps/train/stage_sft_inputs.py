import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from zenml import step

from finetune.data.tokenized import TokenizedDataset
from finetune.models.directory import ModelDirectory


@step
def stage_sft_inputs(
    base_model_dir: ModelDirectory, tokenized_train: TokenizedDataset, tokenized_validation: TokenizedDataset
) -> Annotated[Path, "sft_inputs"]:
    """The base model and the tokenized splits in one directory for ``train_sft_model_multi_gpu``.

    A step launched with ``run_with_accelerate`` receives its inputs as command-line arguments, so they travel as
    one directory artifact: ``base_model/`` (a copy of the base model's files, so the artifact store holds the
    base weights twice for this run), ``base_model.json``, and ``train/`` and ``validation/`` (the
    ``tokenize_instructions`` Arrow folders, read memory-mapped by every process).
    """
    staged = Path(tempfile.mkdtemp(prefix="sft_inputs_"))
    shutil.copytree(base_model_dir.path, staged / "base_model")
    (staged / "base_model.json").write_text(json.dumps({"base_model": base_model_dir.base_model,
                                                        "num_parameters": base_model_dir.num_parameters}))
    shutil.copytree(tokenized_train.path, staged / "train")
    shutil.copytree(tokenized_validation.path, staged / "validation")
    return staged
