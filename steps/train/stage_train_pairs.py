import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step


@step
def stage_train_pairs(
    train_pairs: pd.DataFrame,
    model_fingerprints: dict[str, str] | None = None,  # cache key only: see below
) -> Annotated[Path, "train_pairs_file"]:
    """The mined pairs as one Parquet file for ``train_cross_encoder_multi_gpu``.

    A step launched with ``run_with_accelerate`` receives its inputs as command-line arguments (strings, numbers,
    paths), so the table travels as a file: ZenML stores it in the artifact store and downloads it next to the
    accelerate processes, on whichever machine the training step runs.

    ``model_fingerprints`` is unused: it is the base model's place in the cache key. The training step's inputs
    (a path, a JSON string) cannot carry it, but a new file artifact (keyed by its id) re-runs that step.
    """
    path = Path(tempfile.mkdtemp(prefix="train_pairs_")) / "train_pairs.parquet"
    train_pairs.to_parquet(path, index=False)
    return path
