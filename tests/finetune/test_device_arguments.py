"""How the trainers feed the device: fused AdamW, pinned memory and loader workers on CUDA, no per-micro-batch sync."""

import os

import pytest
import torch
from datasets import Dataset

from finetune.device import Placement, resolve_placement
from finetune.models.sources import resolve_model
from finetune.params import TinyBertModel, TrainingParams
from finetune.training import common_training_arguments, dataloader_workers, device_arguments

TEXTS = ["what is the capital of france", "paris is the capital of france", "rivers", "the cat sat on the mat"]


@pytest.mark.parametrize(("device", "cores", "workers"), [
    ("cpu", 2, 0), ("cpu", 64, 0), ("mps", 10, 0),   # off CUDA the cores do the maths: no loader processes
    ("cuda", 16, 4), ("cuda", 6, 3), ("cuda", 1, 0), ("cuda", None, 0),
])
def test_loader_workers_only_on_cuda_and_at_most_half_the_cores(device, cores, workers):
    assert dataloader_workers(device, cores) == workers


def test_device_arguments_on_cpu_and_on_cuda():
    cpu = device_arguments(Placement("cpu", "fp32"))
    assert cpu == {"optim": "adamw_torch_fused", "dataloader_pin_memory": False, "dataloader_num_workers": 0,
                   "dataloader_persistent_workers": False, "logging_nan_inf_filter": False}
    cuda = device_arguments(Placement("cuda", "bf16", tf32=True))
    expected = dataloader_workers("cuda", os.cpu_count())
    assert cuda["dataloader_pin_memory"] is True and cuda["optim"] == "adamw_torch_fused"
    assert cuda["dataloader_num_workers"] == expected and cuda["dataloader_persistent_workers"] == (expected > 0)


def _tiny_cross_encoder(tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    path = resolve_model(TinyBertModel(vocab_size=120), tmp_path / "tiny", texts=TEXTS).name_or_path
    return CrossEncoder(path, num_labels=1, max_length=16, device="cpu")


def _dataset() -> Dataset:
    pairs = [(q, d) for q in TEXTS for d in TEXTS]
    return Dataset.from_dict({"query": [q for q, _ in pairs], "passage": [d for _, d in pairs],
                              "label": [float(q == d) for q, d in pairs]})


def _trainer(model, tmp_path, params: TrainingParams, placement: Placement, **overrides):
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments, losses

    arguments = {**common_training_arguments(params, tmp_path / "out", placement), "save_strategy": "no",
                 **overrides}
    return CrossEncoderTrainer(model=model, args=CrossEncoderTrainingArguments(**arguments),
                               train_dataset=_dataset(), loss=losses.BinaryCrossEntropyLoss(model))


def test_the_trainer_builds_fused_adamw(tmp_path):
    params = TrainingParams(max_steps=1, per_device_batch_size=4, device="cpu", precision="fp32")
    trainer = _trainer(_tiny_cross_encoder(tmp_path), tmp_path, params, resolve_placement("cpu", "fp32"))
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
    assert trainer.args.logging_nan_inf_filter is False and trainer.args.dataloader_num_workers == 0


def test_collation_in_loader_workers_trains_like_the_main_process(tmp_path):
    """What the CUDA setting does (the collator tokenises in worker processes), run on CPU: same batches, same
    weights after two updates as collating in the training process."""
    params = TrainingParams(max_steps=2, per_device_batch_size=4, learning_rate=1e-3, warmup_ratio=0.0,
                            device="cpu", precision="fp32", seed=0)
    placement = resolve_placement("cpu", "fp32")
    results = []
    for workers in (0, 2):
        torch.manual_seed(0)
        model = _tiny_cross_encoder(tmp_path / str(workers))
        before = {k: v.clone() for k, v in model.model.state_dict().items()}
        trainer = _trainer(model, tmp_path / f"run{workers}", params, placement, dataloader_num_workers=workers,
                           dataloader_persistent_workers=workers > 0)
        trainer.train()
        after = model.model.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)
        results.append(after)
    assert all(torch.allclose(results[0][k], results[1][k], atol=1e-6) for k in results[0])


@pytest.mark.gpu
def test_cuda_training_pins_memory_and_uses_fused_adamw(tmp_path):
    placement = resolve_placement("cuda", "auto")
    params = TrainingParams(max_steps=2, per_device_batch_size=4, device="cuda")
    model = _tiny_cross_encoder(tmp_path)
    trainer = _trainer(model, tmp_path, params, placement)
    loader = trainer.get_train_dataloader()
    assert trainer.args.dataloader_pin_memory and getattr(loader, "base_dataloader", loader).pin_memory
    trainer.train()
    assert getattr(trainer.optimizer, "optimizer", trainer.optimizer).defaults["fused"] is True
    assert next(model.model.parameters()).device.type == "cuda"
