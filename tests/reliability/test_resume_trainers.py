"""Every other trainer with checkpoints resumes to the same weights, checked in-process.

test_resume.py kills real processes for the cross-encoder and SFT. Here each trainer runs 6 optimizer steps with a
checkpoint every 3 and ``keep: true``; deleting ``checkpoint-6`` leaves the folder as a kill after step 3 would, and
the same call again must report ``resumed_from_step == 3`` and save byte-identical weights (no tolerance). The
dual encoder's 6 steps span two epochs (4 steps each), so resuming also restores the epoch's shuffling; the
curriculum cross-encoder restores its pacing sampler's position; the LM-distillation student's checkpoint key also
holds the teacher and α, so the α = 0 baseline of the same student never resumes from it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from finetune.params import CheckpointParams

pytestmark = pytest.mark.slow

STEPS, EVERY = 6, 3


def _checkpoints(root: Path) -> CheckpointParams:
    return CheckpointParams(every_steps=EVERY, root=root, save_total_limit=2, keep=True)


def _weights(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(Path(model_dir).rglob("*.safetensors")):
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _pairs() -> pd.DataFrame:
    rows = []
    for q in range(8):
        for j, role in enumerate(["positive", "negative", "negative"]):
            rows.append(dict(group=q, qid=f"q{q}", query=f"query {'word ' * q}{q}", pid=f"{q}-{j}",
                             passage=f"passage {q} {j} about {role}", grade=2 if role == "positive" else 0,
                             role=role))
    return pd.DataFrame(rows)


def curriculum_cross_encoder(root: Path, out: Path) -> tuple[Path, int]:
    from finetune.curriculum import QueryCurriculum
    from finetune.params import CrossEncoderParams, TinyBertModel, TrainingParams
    from finetune.ranking.cross_encoder import train_cross_encoder

    params = CrossEncoderParams(model=TinyBertModel(vocab_size=200), training=TrainingParams(
        max_steps=STEPS, per_device_batch_size=4, learning_rate=1e-3, max_length=32, logging_steps=1, device="cpu",
        precision="fp32", checkpoints=_checkpoints(root)))
    curriculum = QueryCurriculum({f"q{q}": float(q) for q in range(8)}, "linear")
    result = train_cross_encoder(_pairs(), params, out, curriculum)
    return result.model_dir, result.resumed_from_step


def dual_encoder(root: Path, out: Path) -> tuple[Path, int]:
    from finetune.params import DualEncoderParams, TinyBertModel, TrainingParams
    from finetune.ranking.dual_encoder import train_dual_encoder

    params = DualEncoderParams(model=TinyBertModel(vocab_size=200), training=TrainingParams(
        max_steps=STEPS, per_device_batch_size=2, learning_rate=1e-3, max_length=32, logging_steps=1, device="cpu",
        precision="fp32", checkpoints=_checkpoints(root)))
    result = train_dual_encoder(_pairs(), params, out)
    return result.model_dir, result.resumed_from_step


def dpo(root: Path, out: Path) -> tuple[Path, int]:
    from finetune.data.preferences import load_preference_data
    from finetune.generation.preference import train_dpo
    from finetune.params import DemoPreferences, DpoParams, PreferenceDataParams

    train, test = load_preference_data(PreferenceDataParams(
        source=DemoPreferences(output_dir=out / "data", num_pairs=60)))[:2]
    params = DpoParams(
        model={"kind": "tiny_gpt2", "hidden_size": 32, "num_layers": 2, "vocab_size": 400,
               "max_position_embeddings": 64},
        method={"name": "lora", "r": 4}, training={
            "max_steps": STEPS, "per_device_batch_size": 4, "learning_rate": 5e-3, "max_length": 48,
            "logging_steps": 1, "eval_steps": 3, "device": "cpu", "precision": "fp32",
            "checkpoints": _checkpoints(root)})
    result = train_dpo(train, test, params, out / "train")
    return result.model_dir, result.stats["resumed_from_step"]


def causal_lm(root: Path, out: Path) -> tuple[Path, int]:
    from finetune.data.text import load_text_data
    from finetune.generation.training import train_causal_lm
    from finetune.params import CausalLmParams, DemoText, GenerationTrainingParams, TextDataParams, TinyGpt2Model

    train, _, _ = load_text_data(TextDataParams(source=DemoText(output_dir=out / "data", num_documents=12)))
    params = CausalLmParams(model=TinyGpt2Model(), block_size=32, training=GenerationTrainingParams(
        max_steps=STEPS, per_device_batch_size=4, learning_rate=5e-3, logging_steps=1, device="cpu",
        precision="fp32", checkpoints=_checkpoints(root)))
    result = train_causal_lm(train, train.iloc[:0], params, out / "train")
    return result.model_dir, result.stats["resumed_from_step"]


def cross_encoder_student(root: Path, out: Path) -> tuple[Path, int]:
    """Every other layer of a saved tiny cross-encoder teacher, learning its margins (teacher scores made up)."""
    from finetune.params import CrossEncoderDistillationParams, TinyBertModel, TrainingParams
    from finetune.ranking.distillation import save_encoder, train_cross_encoder_student

    pairs = _pairs()
    teacher, _, _ = save_encoder(TinyBertModel(vocab_size=200, num_layers=4), "cross_encoder", out / "teacher",
                                 pairs["query"].tolist() + pairs["passage"].tolist())
    scored = pairs.assign(teacher_score=[3.0 if r == "positive" else float(i % 3) for i, r in enumerate(pairs["role"])])
    params = CrossEncoderDistillationParams(training=TrainingParams(
        max_steps=STEPS, per_device_batch_size=4, learning_rate=1e-3, max_length=32, logging_steps=1, device="cpu",
        precision="fp32", checkpoints=_checkpoints(root)))
    result = train_cross_encoder_student(scored, params, out / "train", teacher, "tiny teacher")
    return result.model_dir, result.resumed_from_step


def lm_distillation(root: Path, out: Path) -> tuple[Path, int]:
    """A tiny GPT-2 student learning from a tiny GPT-2 teacher whose BPE tokenizer was trained on the same text."""
    from finetune.data.text import load_text_data
    from finetune.generation.distillation import distill_causal_lm
    from finetune.models.causal import build_tiny_causal_lm
    from finetune.params import DemoText, LmDistillationParams, TextDataParams, TinyGpt2Model

    train, _, _ = load_text_data(TextDataParams(source=DemoText(output_dir=out / "data", num_documents=12)))
    teacher = build_tiny_causal_lm(TinyGpt2Model(vocab_size=400, seed=3), out / "teacher", train["text"].tolist())
    params = LmDistillationParams(
        teacher={"kind": "local", "path": str(teacher)}, student={"kind": "tiny_gpt2", "hidden_size": 16,
                                                                  "vocab_size": 400},
        alpha=0.5, block_size=32, training={
            "max_steps": STEPS, "per_device_batch_size": 4, "learning_rate": 5e-3, "logging_steps": 1,
            "device": "cpu", "precision": "fp32", "checkpoints": _checkpoints(root)})
    result = distill_causal_lm(train, train.iloc[:0], teacher, params, out / "train")
    return result.model_dir, result.stats["resumed_from_step"]


def reward_model(root: Path, out: Path, caplog) -> tuple[Path, int]:
    from finetune.generation.rlhf import train_reward_model
    from finetune.models.causal import build_tiny_causal_lm
    from finetune.params import RewardModelParams, TinyGpt2Model, TrainingParams

    pairs = pd.DataFrame([{"prompt": f"say {w}:", "chosen": f" {w}", "rejected": f" {o}"}
                          for w, o in [("up", "down"), ("down", "up")] * 8])
    base = build_tiny_causal_lm(TinyGpt2Model(vocab_size=300, max_position_embeddings=64), out / "base",
                                [f"{p}{c}{r}" for p, c, r in pairs.itertuples(index=False)])
    params = RewardModelParams(training=TrainingParams(
        max_steps=STEPS, per_device_batch_size=4, learning_rate=1e-3, max_length=32, logging_steps=1, device="cpu",
        precision="fp32", checkpoints=_checkpoints(root)))
    caplog.clear()
    result = train_reward_model(base, pairs, pairs, params, out / "train")
    resumed = [r.args[1] for r in caplog.records if r.getMessage().startswith("resuming training from")]
    return result.model_dir, resumed[0] if resumed else 0


@pytest.mark.parametrize("trainer", ["curriculum_cross_encoder", "dual_encoder", "cross_encoder_student", "dpo",
                                     "causal_lm", "lm_distillation", "reward_model"])
def test_resuming_from_an_earlier_checkpoint_saves_the_same_weights(trainer, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="finetune.training")
    run = globals()[trainer]
    extra = (caplog,) if trainer == "reward_model" else ()
    first_dir, first_resumed = run(tmp_path / "checkpoints", tmp_path / "first", *extra)
    assert first_resumed == 0
    (folder,) = [p for p in (tmp_path / "checkpoints").glob("*/*") if p.is_dir()]
    assert sorted(p.name for p in folder.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    shutil.rmtree(folder / "checkpoint-6")  # as if killed between step 3 and step 6

    second_dir, second_resumed = run(tmp_path / "checkpoints", tmp_path / "second", *extra)
    assert second_resumed == EVERY
    assert _weights(second_dir) == _weights(first_dir)
