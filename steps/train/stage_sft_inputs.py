import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step

from finetune.models.directory import ModelDirectory


@step
def stage_sft_inputs(
    base_model_dir: ModelDirectory, train_examples: pd.DataFrame, validation_examples: pd.DataFrame
) -> Annotated[Path, "sft_inputs"]:
    """The base model and the example tables in one directory for ``train_sft_model_multi_gpu``.

    A step launched with ``run_with_accelerate`` receives its inputs as command-line arguments, so they travel as
    one directory artifact: ``base_model/`` (a copy of the base model's files, so the artifact store holds the
    base weights twice for this run), ``base_model.json``, ``train.parquet`` and ``validation.parquet``.
    """
    staged = Path(tempfile.mkdtemp(prefix="sft_inputs_"))
    shutil.copytree(base_model_dir.path, staged / "base_model")
    (staged / "base_model.json").write_text(json.dumps({"base_model": base_model_dir.base_model,
                                                        "num_parameters": base_model_dir.num_parameters}))
    train_examples.to_parquet(staged / "train.parquet", index=False)
    validation_examples.to_parquet(staged / "validation.parquet", index=False)
    return staged
