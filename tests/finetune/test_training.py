"""finetune.training: checkpoint keys, the checkpoint plan, finding the last complete checkpoint, seeding."""

import hashlib
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from finetune.device import resolve_placement
from finetune.params import CheckpointParams, GenerationTrainingParams, LocalModel, TrainingParams
from finetune.training import CheckpointPlan, checkpoint_plan, fingerprint

HOLD_LOCK = """
import fcntl, os, sys
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def _folder(path, weights: bytes):
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "bert"}')
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_fingerprint_follows_content_not_location_or_checkpoint_settings(tmp_path):
    frame = pd.DataFrame({"query": ["a", "b"], "label": [1.0, 0.0]})
    params = TrainingParams(learning_rate=1e-3)
    key = fingerprint(params, frame, LocalModel(path=_folder(tmp_path / "run1", b"\x00\x01")))

    # A new materialised copy of the same model, another interval or root: the same key, so a re-run resumes.
    moved = LocalModel(path=_folder(tmp_path / "run2", b"\x00\x01"))
    elsewhere = params.model_copy(update={"checkpoints": CheckpointParams(every_steps=7, root=tmp_path / "x")})
    assert fingerprint(elsewhere, frame.copy(), moved) == key

    # Anything that changes what is trained: a new key.
    assert fingerprint(params, frame, LocalModel(path=_folder(tmp_path / "run3", b"\x00\x02"))) != key
    assert fingerprint(params.model_copy(update={"learning_rate": 2e-3}), frame, moved) != key
    assert fingerprint(params, frame.assign(label=[1.0, 1.0]), moved) != key
    assert fingerprint(params, frame.rename(columns={"label": "score"}), moved) != key

    with pytest.raises(TypeError, match="cannot fingerprint a object"):
        fingerprint(object())


def test_checkpoint_plan_folder_and_trainer_arguments(tmp_path):
    params = CheckpointParams(every_steps=50, root=tmp_path, save_total_limit=3)
    plan = checkpoint_plan("cross_encoder", params, TrainingParams())
    assert plan.directory.parent == tmp_path / "cross_encoder" and len(plan.directory.name) == 20
    assert plan.arguments() == {"output_dir": str(plan.directory), "save_strategy": "steps", "save_steps": 50,
                                "save_total_limit": 3, "save_only_model": False}
    other = checkpoint_plan("sft", params, TrainingParams())
    assert other.directory.parent.name == "sft"
    plan.finish()
    other.finish()

    off = checkpoint_plan("cross_encoder", CheckpointParams(every_steps=None), TrainingParams())
    assert off.directory is None and off.arguments() == {"save_strategy": "no"} and off.last_checkpoint() is None


def test_last_checkpoint_passes_over_folders_a_kill_left_half_written(tmp_path):
    plan = CheckpointPlan(tmp_path / "key", every_steps=5)
    assert plan.last_checkpoint() is None
    for step in (5, 10):
        (tmp_path / "key" / f"checkpoint-{step}").mkdir(parents=True)
        (tmp_path / "key" / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "key" / "checkpoint-15").mkdir()  # killed before trainer_state.json, which is written last
    (tmp_path / "key" / "checkpoint-20").mkdir()
    (tmp_path / "key" / "checkpoint-20" / "trainer_state.json").write_text('{"global_st')  # killed mid-write
    (tmp_path / "key" / "checkpoint-x").mkdir()
    assert plan.last_checkpoint() == (tmp_path / "key" / "checkpoint-10", 10)


def test_a_run_already_training_elsewhere_keeps_its_folder_to_itself(tmp_path):
    """While another process holds the folder's lock, a second identical run gets no checkpoints (it must not write
    into, rotate or delete the first one's); once that process is gone (killed: the kernel drops its lock), the
    folder is free and a re-run resumes from it."""
    params = CheckpointParams(every_steps=5, root=tmp_path)
    plan = checkpoint_plan("sft", params, TrainingParams())
    plan.finish()  # releases the folder (and deletes it)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(plan.directory / ".lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert checkpoint_plan("sft", params, TrainingParams()).directory is None
    finally:
        holder.kill()
        holder.wait()
    again = checkpoint_plan("sft", params, TrainingParams())
    assert again.directory == plan.directory
    assert checkpoint_plan("sft", params, TrainingParams()).directory == plan.directory  # this process holds it
    again.finish()


def test_finish_deletes_the_checkpoints_unless_kept(tmp_path):
    for keep in (False, True):
        folder = tmp_path / str(keep) / "checkpoint-5"
        folder.mkdir(parents=True)
        CheckpointPlan(folder.parent, every_steps=5, keep=keep).finish()
        assert folder.parent.exists() is keep


def test_generation_checkpoints_with_validation_follow_the_evaluations(tmp_path):
    """With the best model restored at the end, checkpoints are saved at every evaluation (eval_steps 5, not the
    interval 7): the best must be among the saved ones. Without validation the interval applies."""
    from finetune.generation.training import to_training_arguments

    training = GenerationTrainingParams(eval_steps=5, checkpoints=CheckpointParams(every_steps=7, root=tmp_path))
    plan = checkpoint_plan("sft", training.checkpoints, training)
    placement = resolve_placement("cpu", "fp32")
    validated = to_training_arguments(training, tmp_path / "work", placement, has_validation=True, checkpoints=plan)
    assert (validated.save_steps, validated.output_dir, validated.save_only_model) == (5, str(plan.directory), False)
    assert validated.save_total_limit == 2 and validated.load_best_model_at_end
    plain = to_training_arguments(training, tmp_path / "work", placement, has_validation=False, checkpoints=plan)
    assert (plain.save_steps, plain.save_strategy) == (7, "steps")
    off = to_training_arguments(training, tmp_path / "work", placement, has_validation=False)
    assert off.save_strategy == "no" and off.output_dir == str(tmp_path / "work")


def test_a_head_created_at_load_time_does_not_depend_on_the_process_random_state(tmp_path):
    """A checkpoint without a classifier (like all-MiniLM-L6-v2) gets a new head when the cross-encoder loads it.
    Whatever the global torch state before training, the same seed must give the same trained weights."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from finetune.models.sources import build_tiny_bert
    from finetune.params import CrossEncoderParams, TinyBertModel
    from finetune.ranking.cross_encoder import train_cross_encoder

    pairs = pd.DataFrame({
        "group": [0, 0, 1, 1], "qid": ["1", "1", "2", "2"], "query": ["red fox", "red fox", "blue sea", "blue sea"],
        "pid": ["1", "2", "3", "4"], "passage": ["a red fox", "a cat", "the blue sea", "a dog"],
        "grade": [1, 0, 1, 0], "role": ["positive", "negative", "positive", "negative"],
    })
    full = build_tiny_bert(TinyBertModel(vocab_size=120), tmp_path / "tiny", pairs["query"].tolist() +
                           pairs["passage"].tolist())
    headless = tmp_path / "headless"
    BertForSequenceClassification.from_pretrained(full).bert.save_pretrained(headless)
    AutoTokenizer.from_pretrained(full).save_pretrained(headless)
    params = CrossEncoderParams(model=LocalModel(path=headless), training=TrainingParams(
        max_steps=2, per_device_batch_size=2, device="cpu", precision="fp32",
        checkpoints=CheckpointParams(every_steps=None)))
    digests = []
    for state in (1, 2):
        torch.manual_seed(state)
        model_dir = train_cross_encoder(pairs, params, tmp_path / f"run{state}").model_dir
        digests.append(hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
