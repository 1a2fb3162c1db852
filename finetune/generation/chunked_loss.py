"""Next-token cross-entropy computed in chunks of tokens, so the ``[batch × block × vocab]`` logits never exist whole.

transformers' ``ForCausalLMLoss`` projects every position through the LM head and upcasts the result to fp32 before
the cross-entropy: at a 151,936-token vocabulary, 8 × 1024 tokens are 8,192 × 151,936 × 4 B = 5.0 GB of fp32 logits,
held with the log-softmax and its gradient of the same size. :func:`chunked_causal_lm_loss` projects
``chunk_tokens`` positions at a time (fp32 logits, as the model's loss upcasts them) and keeps only each chunk's
summed loss; every chunk is checkpointed (``torch.utils.checkpoint``, non-reentrant), so backward recomputes one
chunk's logits at a time. What the loss holds at once is then a few fp32 tiles of ``chunk_tokens × vocab`` (logits,
log-softmax and their gradients while one chunk is differentiated; one tile is 1,024 × 151,936 × 4 B = 0.6 GB)
instead of the whole batch's. The price is one more LM-head matmul per chunk in backward.

:class:`ChunkedLossTrainerMixin` puts it into a transformers ``Trainer``: ``compute_loss`` runs the model's body
(``model.base_model``: ``model`` for Llama / Qwen2, ``transformer`` for GPT-2; inside a LoRA/AdaLoRA PEFT wrapper the
adapters sit in those same modules) and then the chunked loss on the LM head's weight. TRL's ``SFTTrainer`` and
``DPOTrainer`` already compute their losses without full logits (TRL's fused LM head), so only the plain ``Trainer``
of continued pre-training uses this.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
# Config attributes with which a model's forward changes the logits between the LM head and the loss (the list TRL's
# fused LM head reads): Gemma 2/3 soft-cap them, Cohere multiplies by logit_scale, Granite / MiniCPM3 divide by
# logits_scaling, Falcon-H1 multiplies by lm_head_multiplier; MoE models add a router loss to the model's own.
_HEAD_CHANGES = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier",
                 "lm_head_multiplier")


def _chunk_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    labels: torch.Tensor) -> torch.Tensor:
    # The LM head's matmul in whatever dtype autocast gives it, then fp32: what the model's own forward and loss do.
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_causal_lm_loss(hidden_states: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                           chunk_tokens: int, bias: torch.Tensor | None = None,
                           num_items_in_batch: torch.Tensor | int | None = None,
                           shift_labels: torch.Tensor | None = None) -> torch.Tensor:
    """transformers' ``ForCausalLMLoss`` of ``hidden_states @ weight.T + bias``, ``chunk_tokens`` positions at a time.

    Position ``i`` predicts ``labels[i + 1]`` (the last position of a row predicts nothing); labels equal to -100
    are not scored. The loss is the mean over scored positions, or, with ``num_items_in_batch`` (what the Trainer
    passes under gradient accumulation), their sum divided by it, exactly as ``ForCausalLMLoss`` (no tokens
    scored: NaN, as there).

    Args:
        hidden_states: ``(batch, length, hidden)``, the decoder's final (normalised) hidden states.
        weight: The LM head's ``(vocab, hidden)`` weight (the input embedding when tied).
        labels: ``(batch, length)`` token ids, -100 where not scored; ignored when ``shift_labels`` is given.
        chunk_tokens: Positions (of ``batch × length``) projected at once.
        bias: The LM head's bias, if it has one.
        num_items_in_batch: Divide the summed loss by this instead of averaging.
        shift_labels: ``(batch, length)`` labels already shifted (the label of position ``i`` at ``i``).

    Returns:
        A scalar fp32 loss.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    targets = shift_labels.reshape(-1).to(hidden_states.device)
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])
    differentiable = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_tokens):
        args = (hidden[start : start + chunk_tokens], weight, bias, targets[start : start + chunk_tokens])
        # No randomness inside a chunk, so no RNG state to save for the recomputation.
        total = total + (checkpoint(_chunk_loss_sum, *args, use_reentrant=False, preserve_rng_state=False)
                         if differentiable else _chunk_loss_sum(*args))
    if num_items_in_batch is None:
        return total / (targets != IGNORE_INDEX).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def causal_lm_parts(model) -> tuple[torch.nn.Module, torch.nn.Linear]:
    """The body (``base_model``: embeddings, blocks, final norm) and LM head of a causal LM, PEFT-wrapped or not.

    Raises:
        ValueError: A prompt-learning PEFT model (its virtual tokens are added by the wrapper's forward, which the
            body does not run), or an LM head that is not a linear layer.
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        if model.active_peft_config.is_prompt_learning:
            raise ValueError(f"training.chunked_loss_tokens: {model.active_peft_config.peft_type.value.lower()} adds "
                             "virtual tokens in the PEFT wrapper's forward; train it without chunked_loss_tokens")
        model = model.get_base_model()
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(f"training.chunked_loss_tokens: {type(model).__name__}'s LM head is "
                         f"{type(head).__name__}, not a linear layer; train it without chunked_loss_tokens")
    return model.base_model, head


def check_chunkable(model, chunk_tokens: int, autocast=None, rtol: float = 1e-4) -> None:
    """Refuse a model whose own loss the chunked loss would not reproduce, before any training.

    First by config (soft-capped or scaled logits, a MoE router loss), then by computing both losses on two rows of
    16 seeded random tokens, in eval mode (no dropout), without gradients, under ``autocast`` (the trainer's): they
    must agree within ``rtol`` when the model's logits are fp32, within 2e-2 when they are half precision (bf16
    logits round differently with the matmul's shape).

    Raises:
        ValueError: One line naming the config attribute, or the two losses.
    """
    config = model.config.get_text_config()
    for name in _HEAD_CHANGES:
        value = getattr(config, name, None)
        if value is not None and value != 1.0:
            raise ValueError(f"training.chunked_loss_tokens: {config.model_type} changes its logits after the LM head "
                             f"({name}={value}); the chunked loss would differ from the model's, so train it without "
                             "chunked_loss_tokens")
    if getattr(config, "output_router_logits", False):
        raise ValueError(f"training.chunked_loss_tokens: {config.model_type} adds a router loss to its own "
                         "(output_router_logits); train it without chunked_loss_tokens")
    body, head = causal_lm_parts(model)
    ids = torch.randint(head.weight.shape[0], (2, 16), generator=torch.Generator().manual_seed(0))
    ids = ids.to(head.weight.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast or contextlib.nullcontext():
            own = model(input_ids=ids, labels=ids, use_cache=False)
            hidden = body(input_ids=ids, use_cache=False).last_hidden_state
            chunked = chunked_causal_lm_loss(hidden, head.weight, ids, chunk_tokens, head.bias)
    finally:
        model.train(was_training)
    tolerance = rtol if own.logits.dtype == torch.float32 else 2e-2
    expected = own.loss.float().to(chunked.device)
    if not torch.isclose(chunked, expected, rtol=tolerance, atol=0.0):
        raise ValueError(f"training.chunked_loss_tokens: on random tokens the chunked loss {chunked.item():.6f} "
                         f"differs from {type(model).__name__}'s own {expected.item():.6f}; train it without "
                         "chunked_loss_tokens")


class ChunkedLossTrainerMixin:
    """Computes a transformers ``Trainer``'s loss with :func:`chunked_causal_lm_loss`:
    ``class T(ChunkedLossTrainerMixin, Trainer)``.

    ``compute_loss`` runs the model's body under the accelerator's autocast (what accelerate wraps the model's
    forward in), then the chunked loss, passing ``num_items_in_batch`` exactly when the default ``compute_loss``
    would pass it to the model, so gradient accumulation scales the same way. Evaluation gets the same loss without
    logits (``prediction_loss_only``, the default without ``compute_metrics``). Single process, one device, no label
    smoothing: the body call bypasses DDP / ``nn.DataParallel`` wrappers, and smoothing needs full logits.

    Args:
        chunked_loss_tokens: Positions projected through the LM head at once; None: the model's own loss.
    """

    def __init__(self, *args, chunked_loss_tokens: int | None = None, **kwargs) -> None:
        self.chunked_loss_tokens = chunked_loss_tokens
        super().__init__(*args, **kwargs)
        if chunked_loss_tokens is None:
            return
        if self.args.world_size > 1 or self.args.n_gpu > 1:
            raise ValueError("training.chunked_loss_tokens: single-process, single-device training only "
                             f"({self.args.world_size} processes, {self.args.n_gpu} GPUs)")
        if self.args.label_smoothing_factor:
            raise ValueError("training.chunked_loss_tokens cannot smooth labels (label_smoothing_factor needs full "
                             "logits)")
        check_chunkable(self.model, chunked_loss_tokens, self.accelerator.autocast())

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.chunked_loss_tokens is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from transformers.modeling_outputs import CausalLMOutputWithPast

        body, head = causal_lm_parts(self.accelerator.unwrap_model(model))
        body_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels")}
        with self.accelerator.autocast():
            hidden = body(**body_inputs, use_cache=False).last_hidden_state
            loss = chunked_causal_lm_loss(
                hidden, head.weight, inputs.get("labels"), self.chunked_loss_tokens, head.bias,
                num_items_in_batch if self.model_accepts_loss_kwargs else None, inputs.get("shift_labels"))
        return (loss, CausalLMOutputWithPast(loss=loss)) if return_outputs else loss


def with_chunked_loss(trainer_class: type) -> type:
    """``trainer_class`` with :class:`ChunkedLossTrainerMixin` mixed in (pass ``chunked_loss_tokens=``)."""
    return type(f"ChunkedLoss{trainer_class.__name__}", (ChunkedLossTrainerMixin, trainer_class), {})
