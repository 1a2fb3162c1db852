"""A training call that completes leaves no checkpoints behind (unless ``checkpoints.keep``); a failed one does.

Issue 20: a benchmark that trained through ``causal_lm_setup`` with its own ``trainer.train()`` left ~17 GB under
``.checkpoints/causal_lm/``: the Trainer saves at its last step whatever the interval, and only
``CheckpointPlan.finish`` (called by the library's ``train_*`` functions after the final save) deleted the folder.
Here each trainer checkpoints every step into a temporary root, called directly as a script or a notebook would.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from finetune.params import CheckpointParams


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _checkpoint_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("*/*/checkpoint-*"))


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> pd.DataFrame:
    from finetune.data.text import load_text_data
    from finetune.params import DemoText, TextDataParams

    out = tmp_path_factory.mktemp("text")
    return load_text_data(TextDataParams(source=DemoText(output_dir=out, num_documents=12)))[0]


def _causal_lm_params(root: Path, keep: bool = False):
    from finetune.params import CausalLmParams, GenerationTrainingParams, TinyGpt2Model

    return CausalLmParams(model=TinyGpt2Model(), block_size=32, training=GenerationTrainingParams(
        max_steps=3, per_device_batch_size=4, learning_rate=5e-3, logging_steps=1, device="cpu", precision="fp32",
        checkpoints=CheckpointParams(every_steps=1, root=root, keep=keep)))


@pytest.mark.parametrize("keep", [False, True])
def test_train_causal_lm_called_directly_leaves_no_checkpoints_unless_kept(documents, tmp_path, keep):
    from finetune.generation.training import train_causal_lm

    root = tmp_path / "checkpoints"
    result = train_causal_lm(documents, documents.iloc[:0], _causal_lm_params(root, keep), tmp_path / "run")
    assert result.stats["steps"] == 3 and (result.model_dir / "model.safetensors").is_file()
    if keep:
        assert _checkpoint_folders(root) == ["checkpoint-2", "checkpoint-3"]  # save_total_limit 2
    else:
        assert _files(root) == []


@pytest.mark.parametrize("keep", [False, True])
def test_a_setup_trained_by_its_caller_leaves_no_checkpoints_unless_kept(documents, tmp_path, keep):
    """The benchmark's way: ``causal_lm_setup`` and the caller's own ``trainer.train()``, no ``run_training``."""
    from finetune.generation.training import causal_lm_setup

    root = tmp_path / "checkpoints"
    setup = causal_lm_setup(documents, documents.iloc[:0], _causal_lm_params(root, keep), tmp_path / "run")
    setup.trainer.train()
    assert setup.trainer.state.global_step == 3
    if keep:
        assert _checkpoint_folders(root) == ["checkpoint-2", "checkpoint-3"]
    else:
        assert _files(root) == []


def test_under_run_training_checkpoints_last_until_the_final_model_is_saved(documents, tmp_path):
    """The library's own call keeps the folder through the end of ``train()`` (a kill while the model is saved
    still resumes) and deletes it after the save."""
    from transformers import TrainerCallback

    from finetune.generation.training import causal_lm_setup, run_training

    seen = []

    class Look(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            seen.append(_checkpoint_folders(root))

    root = tmp_path / "checkpoints"
    setup = causal_lm_setup(documents, documents.iloc[:0], _causal_lm_params(root), tmp_path / "run")
    setup.trainer.add_callback(Look())  # runs after the plan's callback
    result = run_training(setup)
    assert seen == [["checkpoint-2", "checkpoint-3"]]
    assert (result.model_dir / "model.safetensors").is_file() and _files(root) == []


def test_a_run_that_fails_keeps_its_checkpoints_for_the_next_call(documents, tmp_path):
    from transformers import TrainerCallback

    from finetune.generation.training import causal_lm_setup

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise RuntimeError("killed")

    root = tmp_path / "checkpoints"
    setup = causal_lm_setup(documents, documents.iloc[:0], _causal_lm_params(root), tmp_path / "run")
    setup.trainer.add_callback(Crash())
    with pytest.raises(RuntimeError, match="killed"):
        setup.trainer.train()
    assert _checkpoint_folders(root) == ["checkpoint-1", "checkpoint-2"]
    setup.checkpoints.finish()  # release this process's lock on the folder


@pytest.mark.parametrize("keep", [False, True])
def test_train_cross_encoder_called_directly_leaves_no_checkpoints_unless_kept(tmp_path, keep):
    from finetune.params import CrossEncoderParams, TinyBertModel, TrainingParams
    from finetune.ranking.cross_encoder import train_cross_encoder

    pairs = pd.DataFrame({
        "group": [0, 0, 1, 1], "qid": ["1", "1", "2", "2"], "query": ["red fox", "red fox", "blue sea", "blue sea"],
        "pid": ["1", "2", "3", "4"], "passage": ["a red fox", "a cat", "the blue sea", "a dog"],
        "grade": [1, 0, 1, 0], "role": ["positive", "negative", "positive", "negative"],
    })
    root = tmp_path / "checkpoints"
    params = CrossEncoderParams(model=TinyBertModel(vocab_size=120), training=TrainingParams(
        max_steps=2, per_device_batch_size=2, max_length=16, device="cpu", precision="fp32",
        checkpoints=CheckpointParams(every_steps=1, root=root, keep=keep)))
    result = train_cross_encoder(pairs, params, tmp_path / "run")
    assert (result.model_dir / "model.safetensors").is_file()
    if keep:
        assert _checkpoint_folders(root) == ["checkpoint-1", "checkpoint-2"]
    else:
        assert _files(root) == []
