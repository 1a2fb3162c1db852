"""Multi-GPU variants of the training steps (``run_with_accelerate`` on the step definition).

What CPU can prove: the decorated objects are ZenML steps with the same outputs as the single-device steps, their
inputs fit accelerate's command line, and the whole path (staging → ``accelerate launch`` of a generated script →
training in a child process → outputs pickled back) trains exactly what the in-process step trains. With no GPU
accelerate starts one process; the data-parallel run itself needs GPUs (configs/gpu/*_multi_gpu.yaml).
"""

from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from finetune.params import CrossEncoderParams, MiningParams, TinyBertModel, TrainingParams
from finetune.ranking.cross_encoder import mine_hard_negatives, train_cross_encoder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def toy_pairs(toy_ranking) -> pd.DataFrame:
    order = ["20", "21", "10", "12", "14", "16", "11", "13", "15", "17", "18", "19"]
    run = {q: {pid: float(len(order) - i) for i, pid in enumerate(order)} for q in toy_ranking.queries}
    return mine_hard_negatives(toy_ranking, run, MiningParams(negatives_per_positive=3, positive_min_grade=2))


def _params() -> CrossEncoderParams:
    return CrossEncoderParams(
        model=TinyBertModel(vocab_size=200, seed=0), loss="bce",
        training=TrainingParams(max_steps=6, per_device_batch_size=8, learning_rate=3e-3, warmup_ratio=0.0,
                                logging_steps=2, max_length=32, device="cpu", precision="fp32", seed=0))


def _launch_kwargs(step) -> dict:
    """The ``accelerate launch`` overrides ZenML's wrapper closed over (empty: accelerate's own defaults)."""
    cells = dict(zip(step.entrypoint.__code__.co_freevars, step.entrypoint.__closure__ or (), strict=True))
    return cells["accelerate_launch_kwargs"].cell_contents


@pytest.mark.parametrize(("variant", "original"), [
    ("train_cross_encoder_multi_gpu", "train_cross_encoder"),
    ("train_sft_model_multi_gpu", "train_sft_model"),
])
def test_variants_are_accelerate_wrapped_steps_with_the_original_outputs(variant, original):
    import importlib

    from zenml.steps import BaseStep
    from zenml.utils.function_utils import _cli_wrapped_function

    step = getattr(importlib.import_module(f"steps.train.{variant}"), variant)
    single = getattr(importlib.import_module(f"steps.train.{original}"), original)
    assert isinstance(step, BaseStep) and step.name == variant
    assert step.unwrapped_entrypoint is not step.entrypoint  # the decorator replaced the entrypoint
    assert _launch_kwargs(step) == {}  # num_processes left to accelerate: one process per visible GPU
    assert list(step.entrypoint_definition.outputs) == list(single.entrypoint_definition.outputs)
    _cli_wrapped_function(step.unwrapped_entrypoint)  # raises on any input accelerate's CLI cannot carry


def test_launch_defaults_give_one_process_per_visible_gpu(monkeypatch, tmp_path):
    """With 4 visible GPUs (ResourceSettings.gpu_count: 4) accelerate starts 4 data-parallel processes."""
    from accelerate.commands import launch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    # accelerate >= 1.16 finds the device type through torch.accelerator before asking torch.cuda for the count.
    if hasattr(torch, "accelerator"):
        monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda *a, **k: torch.device("cuda"))
    # Ignore any `accelerate config` file of this host: only the defaults count.
    monkeypatch.setattr(launch, "default_config_file", str(tmp_path / "no_accelerate_config.yaml"))
    args = launch.launch_command_parser().parse_args(["script.py"])
    args, _, _ = launch._validate_launch_command(args)
    assert args.num_processes == 4 and args.multi_gpu


@pytest.mark.slow  # a child Python process imports torch, transformers and ZenML again: ~1 minute
def test_cross_encoder_variant_trains_through_accelerate_launch_like_the_step(toy_pairs, tmp_path, monkeypatch):
    from steps.train.stage_train_pairs import stage_train_pairs
    from steps.train.train_cross_encoder_multi_gpu import train_cross_encoder_multi_gpu

    monkeypatch.chdir(ROOT)  # the generated launch script imports the project from the working directory
    staged = stage_train_pairs.entrypoint(toy_pairs)
    pd.testing.assert_frame_equal(pd.read_parquet(staged), toy_pairs.reset_index(drop=True))
    model_dir, log = train_cross_encoder_multi_gpu.entrypoint(train_pairs_file=staged,
                                                              cross_encoder_json=_params().model_dump_json())
    reference = train_cross_encoder(toy_pairs, _params(), tmp_path)
    assert [e["step"] for e in log] == [2, 4, 6]
    assert [e["loss"] for e in log] == pytest.approx([e["loss"] for e in reference.log_history], rel=1e-5)
    launched, local = load_file(Path(model_dir.path) / "model.safetensors"), load_file(reference.model_dir /
                                                                                         "model.safetensors")
    assert launched.keys() == local.keys()
    assert all(torch.allclose(launched[k], local[k], atol=1e-6) for k in local)
    assert model_dir.kind == "cross_encoder" and model_dir.num_parameters == reference.num_parameters

