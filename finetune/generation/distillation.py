"""Knowledge distillation of causal LMs (the GPT2-medium → GPT2 recipe): a student trained on text against a teacher.

Loss per predicted token: ``α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) + (1−α)·CE(s, next token)`` (Hinton et al. 2015;
the ``τ²`` keeps the soft-target gradients on the scale of the hard-target ones when ``τ`` changes). No stable
library trainer has exactly this (TRL's GKD lives in ``trl.experimental``), so ``DistillationTrainer`` is a
transformers ``Trainer`` whose ``compute_loss`` runs the frozen teacher on the same batch (or reads the teacher's
top-k logits cached in one pass before training, ``cache_top_k``). Everything else (data
packing into blocks, methods, arguments, measurements, saving) is the continued pre-training code of
``finetune.generation.training``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from transformers import Trainer

from finetune.data.tokenized import TokenizedDataset
from finetune.generation.evaluation import perplexity
from finetune.generation.training import (
    CausalTrainResult,
    TrainingSetup,
    causal_lm_setup,
    early_stopping_callbacks,
    run_training,
)
from finetune.models.layer_dropping import drop_layers, num_layers
from finetune.params import LmDistillationParams


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, alpha: float,
            temperature: float, top_k: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distillation loss of a batch of next-token predictions.

    Position ``i`` of the logits predicts ``labels[i + 1]`` (the shift the models' own loss applies); labels equal
    to -100 are not scored. The KL term is averaged over the scored positions, like the cross-entropy.

    Args:
        student_logits: ``(batch, length, vocab)``.
        teacher_logits: ``(batch, length, vocab)`` from a teacher with the same vocabulary.
        labels: ``(batch, length)`` token ids (the input ids for language modelling).
        alpha: Weight of the distillation term (0: cross-entropy only, 1: teacher only).
        temperature: ``τ``; both distributions are softened by it, the cross-entropy is not.
        top_k: Keep only the teacher's ``k`` largest logits per position (renormalised over them) and compare the
            student's full-vocabulary log-probabilities at those tokens (``kd_loss_top_k``).

    Returns:
        ``(loss, kl, ce)``.
    """
    if top_k is not None:
        values, indices = teacher_logits.topk(min(top_k, teacher_logits.shape[-1]), dim=-1)
        return kd_loss_top_k(student_logits, values, indices, labels, alpha, temperature)
    student, targets, (teacher,) = _scored(student_logits, labels, teacher_logits)
    log_p = F.log_softmax(teacher.float() / temperature, dim=-1)
    return _combine(log_p, F.log_softmax(student / temperature, dim=-1), student, targets, alpha, temperature)


def kd_loss_top_k(student_logits: torch.Tensor, teacher_values: torch.Tensor, teacher_indices: torch.Tensor,
                  labels: torch.Tensor, alpha: float, temperature: float):
    """``kd_loss`` from the teacher's top-k logits ``(batch, length, k)`` and their token ids (cached or fresh)."""
    student, targets, (values, indices) = _scored(student_logits, labels, teacher_values, teacher_indices)
    log_p = F.log_softmax(values.float() / temperature, dim=-1)
    log_q = F.log_softmax(student / temperature, dim=-1).gather(-1, indices.long())
    return _combine(log_p, log_q, student, targets, alpha, temperature)


def _scored(student_logits, labels, *teacher):
    targets = labels[:, 1:]
    scored = targets != -100
    return student_logits[:, :-1].float()[scored], targets[scored], [t[:, :-1][scored] for t in teacher]


def _combine(log_p, log_q, student, targets, alpha: float, temperature: float):
    ce = F.cross_entropy(student, targets)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    return alpha * temperature**2 * kl + (1.0 - alpha) * ce, kl, ce


def teacher_top_k(teacher, blocks: list[list[int]], k: int, batch_size: int = 16) -> tuple[list, list]:
    """The teacher's ``k`` largest logits and their token ids at every position of every block (one pass, no
    gradients), to cache before training instead of keeping the teacher in memory."""
    device = next(teacher.parameters()).device
    values, indices = [], []
    with torch.inference_mode():
        for i in range(0, len(blocks), batch_size):
            logits = teacher(input_ids=torch.tensor(blocks[i : i + batch_size], device=device)).logits
            top = logits.float().topk(min(k, logits.shape[-1]), dim=-1)
            values += top.values.cpu().tolist()
            indices += top.indices.cpu().tolist()
    return values, indices


def check_vocabularies(teacher_dir: str | Path, student_dir: str | Path) -> None:
    """Refuse a teacher and student that do not share a vocabulary, before any weights are loaded.

    Compares the models' ``vocab_size`` (output rows) and the tokenizers' token → id maps.

    Raises:
        ValueError: One line naming both directories and the first difference.
    """
    from transformers import AutoConfig, AutoTokenizer

    from finetune.models.sources import pretrained_kwargs

    names = f"teacher {teacher_dir} and student {student_dir}"
    sizes = [AutoConfig.from_pretrained(d, **pretrained_kwargs(weights=False)).vocab_size
             for d in (teacher_dir, student_dir)]
    if sizes[0] != sizes[1]:
        raise ValueError(f"{names} have different vocabulary sizes ({sizes[0]} vs {sizes[1]}); distillation "
                         "needs one shared tokenizer")
    vocabs = [AutoTokenizer.from_pretrained(d, **pretrained_kwargs(weights=False)).get_vocab()
              for d in (teacher_dir, student_dir)]
    if vocabs[0] != vocabs[1]:
        differing = sorted(t for t in vocabs[0].keys() | vocabs[1].keys() if vocabs[0].get(t) != vocabs[1].get(t))
        raise ValueError(f"{names} have different token → id maps ({len(differing)} tokens differ, e.g. "
                         f"{differing[0]!r}: {vocabs[0].get(differing[0])} vs {vocabs[1].get(differing[0])})")


class DistillationTrainer(Trainer):
    """A ``Trainer`` whose training loss is ``kd_loss`` against a frozen teacher run on the fly, or against cached
    top-k teacher logits (batch columns ``teacher_values`` / ``teacher_indices``; ``teacher`` may then be None).

    Evaluation returns the plain cross-entropy, so ``eval_loss``, best-checkpoint selection and the validation
    perplexity compare with a student trained without a teacher. With ``alpha == 0`` the teacher is never run.
    """

    def __init__(self, *args, teacher, alpha: float, temperature: float, top_k: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = None if teacher is None else teacher.to(self.args.device).eval().requires_grad_(False)
        self.alpha, self.temperature, self.top_k = alpha, temperature, top_k
        self.kd_log: list[dict] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
        labels = inputs["labels"]
        if not model.training or self.alpha == 0.0:
            zeros = torch.zeros_like(outputs.logits)  # the KL term is multiplied by alpha = 0 or not used
            loss = kd_loss(outputs.logits, zeros, labels, 0.0, self.temperature)[0]
        elif "teacher_values" in inputs:
            loss, kl, ce = kd_loss_top_k(outputs.logits, inputs["teacher_values"], inputs["teacher_indices"], labels,
                                         self.alpha, self.temperature)
        else:
            with torch.no_grad():
                teacher_logits = self.teacher(input_ids=inputs["input_ids"],
                                              attention_mask=inputs.get("attention_mask")).logits
            loss, kl, ce = kd_loss(outputs.logits, teacher_logits, labels, self.alpha, self.temperature, self.top_k)
        if model.training and self.alpha > 0.0 and self.state.global_step % max(1, self.args.logging_steps) == 0:
            self.kd_log.append({"step": self.state.global_step, "kl": kl.item(), "ce": ce.item()})
        return (loss, outputs) if return_outputs else loss


def distill_causal_lm(train: pd.DataFrame | TokenizedDataset, validation: pd.DataFrame | TokenizedDataset,
                      teacher_dir: str | Path, params: LmDistillationParams,
                      output_dir: str | Path) -> CausalTrainResult:
    """Train ``params.student`` on packed text blocks against the teacher in ``teacher_dir``.

    The vocabularies are checked first (``check_vocabularies``), before anything trains. The student's data,
    method, arguments, measurements (tokens/s, memory, validation loss) and saving are those of
    ``causal_lm_setup`` / ``run_training``; only the trainer's loss differs.

    Args:
        train: Documents (``text`` column), or the blocks already tokenized with the student's tokenizer
            (``finetune.generation.tokenization.tokenize_documents`` with ``params.tokenization()``).
        validation: The same for the validation loss (may be empty).
        teacher_dir: A saved causal LM.
        params: Student model (a local directory sharing the teacher's tokenizer, or ``teacher``), the layers it
            keeps of those starting weights (``layers_to_keep``), α, τ, top-k and training.
        output_dir: Work folder; the student is saved to ``<output_dir>/model``.
    """
    from transformers import AutoModelForCausalLM

    from finetune.models.causal import resolve_causal_model
    from finetune.models.sources import pretrained_kwargs

    out = Path(output_dir)
    spec = _local(teacher_dir) if params.student == "teacher" else params.student
    texts = None if isinstance(train, TokenizedDataset) else train["text"].tolist()
    student_dir = resolve_causal_model(spec, out / "base", texts=texts).name_or_path
    keep = params.layers_to_keep(num_layers(student_dir))
    if keep is not None:
        drop_layers(student_dir, out / "base_layers", keep)
        student_dir = str(out / "base_layers")
    check_vocabularies(teacher_dir, student_dir)
    setup = causal_lm_setup(train, validation, params.student_params(_local(student_dir)), out, "lm_distillation",
                            (params, Path(teacher_dir)))
    base = setup.trainer
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, **pretrained_kwargs())
    train_dataset = base.train_dataset
    if params.cache_top_k and params.alpha > 0.0:
        values, indices = teacher_top_k(teacher.to(base.args.device).eval(), train_dataset["input_ids"], params.top_k,
                                        params.training.per_device_eval_batch_size)
        train_dataset = train_dataset.add_column("teacher_values", values).add_column("teacher_indices", indices)
        base.args.remove_unused_columns = False  # the cached columns are not arguments of the model's forward
        teacher = None  # the point of the cache: no teacher in memory while the student trains
    trainer = DistillationTrainer(
        model=base.model, args=base.args, train_dataset=train_dataset, eval_dataset=base.eval_dataset,
        data_collator=base.data_collator, processing_class=setup.tokenizer,
        callbacks=setup.prepared.callbacks + early_stopping_callbacks(params.training, setup.has_validation),
        optimizers=(setup.prepared.optimizer, None),
        teacher=teacher, alpha=params.alpha,
        temperature=params.temperature, top_k=params.top_k,
    )
    setup = TrainingSetup(trainer, setup.prepared, setup.placement, setup.tokenizer, setup.resolved, setup.params,
                          out, setup.has_validation, setup.tokenization, setup.checkpoints, "distill_causal_lm")
    result = run_training(setup)
    result.stats.update(alpha=params.alpha, temperature=params.temperature)
    result.log_history += [{"step": e["step"], "kd_kl": e["kl"], "kd_ce": e["ce"]} for e in trainer.kd_log]
    return result


def _local(path: str | Path):
    from finetune.params import LocalModel

    return LocalModel(path=Path(path))


def scoring_throughput(model, blocks: list[list[int]], batch_size: int) -> float:
    """Tokens per second of forward passes over ``blocks`` (no gradients), after one warm-up batch."""
    device = next(model.parameters()).device
    batches = [torch.tensor(blocks[i : i + batch_size], device=device) for i in range(0, len(blocks), batch_size)]
    with torch.inference_mode():
        model(input_ids=batches[0])
        start = time.perf_counter()
        for batch in batches:
            model(input_ids=batch)
        seconds = time.perf_counter() - start
    return sum(b.numel() for b in batches) / seconds if seconds else 0.0


def compare_models(model_dirs: dict[str, str | Path], texts: list[str], block_size: int, batch_size: int,
                   device: str, paired_against: str | None = None) -> list[dict]:
    """Held-out perplexity, parameter count and scoring tokens/s of each model, on the same blocks of ``texts``.

    Args:
        model_dirs: Role (``teacher``, ``student``, ...) → saved causal LM; all share one tokenizer.
        texts: Held-out documents, packed with EOS into disjoint ``block_size`` windows as training packs them.
        block_size: Tokens per window.
        batch_size: Windows per forward pass.
        device: Where the models run.
        paired_against: A role whose windows every other model is compared with, window by window
            (``paired_windows``): adds its columns to the other rows.

    Returns:
        One row per model: ``model``, ``parameters``, ``test_perplexity``, ``test_nll``, ``tokens_per_second``
        (and the paired columns).
    """
    from finetune.generation.tokenization import group_texts
    from finetune.models.causal import load_causal_lm

    rows, windows = [], {}
    for role, path in model_dirs.items():
        model, tokenizer = load_causal_lm(path, device=device)
        result = perplexity(model, texts, tokenizer, block_size, block_size, batch_size)
        windows[role] = result.window_perplexity
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        blocks = group_texts(ids, block_size, tokenizer.eos_token_id) or [sum(ids, [])[:block_size]]
        rows.append({"model": role, "parameters": sum(p.numel() for p in model.parameters()),
                     "test_perplexity": result.perplexity, "test_nll": result.mean_nll,
                     "tokens_per_second": scoring_throughput(model, blocks, batch_size)})
    if paired_against is not None:
        for row in rows:
            if row["model"] != paired_against:
                row.update(paired_windows(windows[row["model"]], windows[paired_against], paired_against))
    return rows


def paired_windows(candidate: dict[str, float], baseline: dict[str, float], name: str) -> dict[str, object]:
    """Window-by-window comparison of two models' perplexities on the same held-out windows.

    The per-window difference of log-perplexity (mean NLL per token; negative: the candidate is better) is tested
    with a paired t-test; the interval is the 95 % t interval of its mean.

    Returns:
        ``Δ log-ppl vs <name>``, its ``Δ low`` / ``Δ high``, ``windows better`` (``k/n``) and ``vs <name> p``.
    """
    import numpy as np
    from scipy import stats

    keys = sorted(set(candidate) & set(baseline))
    if len(keys) < 2:
        raise ValueError(f"paired test against {name}: {len(keys)} common windows (the models need one tokenizer)")
    diff = np.array([np.log(candidate[k]) - np.log(baseline[k]) for k in keys])
    mean, sem = float(diff.mean()), float(stats.sem(diff))
    half = float(stats.t.ppf(0.975, len(diff) - 1) * sem) if sem > 0 else 0.0
    p = float(stats.ttest_rel(np.log([candidate[k] for k in keys]), np.log([baseline[k] for k in keys])).pvalue) \
        if sem > 0 else (0.0 if mean != 0 else 1.0)
    return {f"Δ log-ppl vs {name}": mean, "Δ low": mean - half, "Δ high": mean + half,
            "windows better": f"{int((diff < 0).sum())}/{len(diff)}", f"vs {name} p": p}
