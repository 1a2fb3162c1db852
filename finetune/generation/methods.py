"""Fine-tuning methods for causal LMs: full, PEFT (LoRA, QLoRA, AdaLoRA, prefix, P-tuning, prompt, multitask
prompt tuning), layer freezing and ULMFiT-style gradual unfreezing with discriminative learning rates.

PEFT builds the adapters; this module maps our method parameters onto PEFT configs (``to_peft_config``), sets
``requires_grad`` for the freezing methods, and provides the two pieces no library has: the gradual-unfreezing
schedule as a ``TrainerCallback`` with per-group optimizer learning rates, and the AdaLoRA budget update
(PEFT leaves calling ``update_and_allocate`` after every optimizer step to the training loop).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

from finetune.models.causal import lora_target_modules
from finetune.params import (
    AdaLoraMethod,
    FullFineTuning,
    GradualUnfreezingMethod,
    LayerFreezingMethod,
    LoraMethod,
    MultitaskPromptTuningMethod,
    PrefixTuningMethod,
    PromptTuningMethod,
    PTuningMethod,
    QLoraMethod,
)

PEFT_METHODS = ("lora", "qlora", "adalora", "prefix_tuning", "p_tuning", "prompt_tuning", "multitask_prompt_tuning")
_BLOCK_LISTS = ("h", "layers", "blocks", "layer")


def transformer_blocks(model: torch.nn.Module) -> tuple[str, list[torch.nn.Module]]:
    """The model's stack of transformer blocks and its parameter-name prefix.

    GPT-2 keeps them in ``transformer.h``, Llama / Mistral in ``model.layers``; the stack is the longest
    ``ModuleList`` with one of those names.

    Raises:
        ValueError: No block stack was found.
    """
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in _BLOCK_LISTS]
    if not found:
        raise ValueError(f"{type(model).__name__}: no transformer block list (a ModuleList named {_BLOCK_LISTS})")
    name, blocks = max(found, key=lambda item: len(item[1]))
    return name, list(blocks)


def _block_index(param_name: str, prefix: str) -> int | None:
    if not param_name.startswith(prefix + "."):
        return None
    return int(param_name[len(prefix) + 1 :].split(".", 1)[0])


def _is_embedding(model: torch.nn.Module, param: torch.nn.Parameter) -> bool:
    return any(param is p for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters())


def freeze_layers(model: torch.nn.Module, method: LayerFreezingMethod) -> list[str]:
    """Freeze the first ``freeze_first_k`` blocks, the embeddings (when asked) and every name matching a pattern.

    With tied input/output embeddings (GPT-2) freezing the embeddings also freezes the LM head: they are one tensor.

    Returns:
        Names of the frozen parameters.

    Raises:
        ValueError: ``freeze_first_k`` is larger than the number of blocks, a pattern matches nothing, or nothing but
            the final norm would train (with tied embeddings, freezing every block and the embeddings does that).
    """
    prefix, blocks = transformer_blocks(model)
    if method.freeze_first_k > len(blocks):
        raise ValueError(f"freeze_first_k {method.freeze_first_k} exceeds the model's {len(blocks)} blocks")
    patterns = [re.compile(p) for p in method.freeze_patterns]
    matched = {p.pattern: False for p in patterns}
    frozen = []
    for name, param in model.named_parameters():
        index = _block_index(name, prefix)
        hits = [p.pattern for p in patterns if p.search(name)]
        matched.update(dict.fromkeys(hits, True))
        if (index is not None and index < method.freeze_first_k) or hits or (
                method.freeze_embeddings and _is_embedding(model, param)):
            param.requires_grad_(False)
            frozen.append(name)
    unmatched = [p for p, hit in matched.items() if not hit]
    if unmatched:
        raise ValueError(f"freeze_patterns {unmatched} match no parameter name (e.g. '{prefix}.0.')")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if all(".ln_f." in n or ".norm." in n or n.startswith("model.norm") for n in trainable):
        raise ValueError(f"layer_freezing leaves only {trainable or 'nothing'} trainable (freeze_first_k "
                         f"{method.freeze_first_k} of {len(blocks)} blocks); freeze fewer blocks")
    return frozen


def unfreezing_groups(model: torch.nn.Module, blocks_per_group: int) -> list[list[str]]:
    """Parameter names in ULMFiT unfreezing order: head first, then blocks from the top, then the embeddings.

    Group 0 is everything after the last block (final norm, LM head); groups 1.. hold ``blocks_per_group`` blocks
    each, counted from the top; the last group is everything before the first block (embeddings). With tied
    embeddings the shared tensor belongs to the head group: it trains from the start.
    """
    prefix, blocks = transformer_blocks(model)
    chunks = [list(range(len(blocks)))[max(0, end - blocks_per_group):end]
              for end in range(len(blocks), 0, -blocks_per_group)]
    head, bottom = [], []
    by_block: dict[int, list[str]] = {}
    after_blocks = False
    names = [name for name, _ in model.named_parameters()]  # shared tensors are listed once, at first use
    lm_head = {name for name, p in model.named_parameters() if p is model.get_output_embeddings().weight}
    for name in names:
        index = _block_index(name, prefix)
        if index is not None:
            by_block.setdefault(index, []).append(name)
            after_blocks = True
        elif name in lm_head or after_blocks:
            head.append(name)
        else:
            bottom.append(name)
    groups = [head] + [[n for i in chunk for n in by_block.get(i, [])] for chunk in chunks]
    return groups + ([bottom] if bottom else [])


def groups_unfrozen_at(step: int, every: int, num_groups: int) -> int:
    """How many groups (head first) are trainable at optimizer step ``step``: one, plus one every ``every`` steps."""
    return min(num_groups, 1 + step // every)


class GradualUnfreezingCallback(TrainerCallback):
    """Unfreeze one more parameter group every ``every`` optimizer steps, from the head down (ULMFiT).

    The optimizer holds every group from the start (see ``gradual_unfreezing_optimizer``); a frozen parameter has
    no gradient, so AdamW skips it until its group unfreezes.
    """

    def __init__(self, model: torch.nn.Module, groups: list[list[str]], every: int):
        self.params = dict(model.named_parameters())
        self.groups = groups
        self.every = every
        self.history: list[tuple[int, int]] = []  # (step, groups unfrozen) whenever the count changes
        self.apply(0)

    def apply(self, step: int) -> int:
        """Set ``requires_grad`` for step ``step``; returns the number of unfrozen groups."""
        count = groups_unfrozen_at(step, self.every, len(self.groups))
        for g, names in enumerate(self.groups):
            for name in names:
                self.params[name].requires_grad_(g < count)
        if not self.history or self.history[-1][1] != count:
            self.history.append((step, count))
        return count

    def on_step_begin(self, args, state, control, **kwargs):
        self.apply(state.global_step)


def gradual_unfreezing_optimizer(model: torch.nn.Module, groups: list[list[str]], learning_rate: float,
                                 weight_decay: float, lr_decay: float | None) -> torch.optim.AdamW:
    """AdamW over every group; group ``g`` (0 = head) trains at ``learning_rate / lr_decay**g`` (ULMFiT's
    discriminative fine-tuning) or at ``learning_rate`` when ``lr_decay`` is None. Biases and norms get no weight
    decay, as in the Trainer's default optimizer.
    """
    params = dict(model.named_parameters())
    param_groups = []
    for g, names in enumerate(groups):
        lr = learning_rate / (lr_decay**g if lr_decay else 1.0)
        decay = [params[n] for n in names if params[n].ndim >= 2]
        no_decay = [params[n] for n in names if params[n].ndim < 2]
        param_groups += [{"params": decay, "lr": lr, "weight_decay": weight_decay, "name": f"group{g}"},
                         {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"group{g}_no_decay"}]
    # fused: one kernel per group, as the Trainer's own default optimizer (``adamw_torch_fused``)
    return torch.optim.AdamW([g for g in param_groups if g["params"]], lr=learning_rate, fused=True)


class AdaLoraBudgetCallback(TrainerCallback):
    """Call AdaLoRA's ``update_and_allocate`` after every optimizer step, while gradients still exist."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)


def _targets(method, model) -> list[str]:
    """LoRA target names; checked here because PEFT's own error names neither the config key nor the choices."""
    targets = list(method.target_modules) if method.target_modules else lora_target_modules(model.config.model_type)
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and not list(m.children())})
        raise ValueError(f"method.target_modules: {missing} match no module of {type(model).__name__} "
                         f"(its leaf modules: {[leaf for leaf in leaves if not leaf.isdigit()]})")
    return targets


def to_peft_config(method, model, tokenizer_path: str | None = None, total_steps: int | None = None):
    """Map a PEFT method's parameters onto its PEFT config (the one place this happens).

    Args:
        method: One of the PEFT method params.
        model: The base model (its ``model_type`` picks LoRA targets; GPT-2's Conv1D needs ``fan_in_fan_out``).
        tokenizer_path: Where prompt tuning finds the tokenizer for ``init_text``.
        total_steps: Optimizer steps of the run (AdaLoRA's budget schedule needs it).
    """
    from peft import (
        AdaLoraConfig,
        LoraConfig,
        MultitaskPromptTuningConfig,
        PrefixTuningConfig,
        PromptEncoderConfig,
        PromptTuningConfig,
    )

    task = "CAUSAL_LM"
    conv1d = model.config.model_type == "gpt2"
    if isinstance(method, LoraMethod):  # also QLoRA: the 4-bit part is in how the base model is loaded
        return LoraConfig(task_type=task, r=method.r, lora_alpha=method.lora_alpha, lora_dropout=method.lora_dropout,
                          target_modules=_targets(method, model), fan_in_fan_out=conv1d)
    if isinstance(method, AdaLoraMethod):
        if not total_steps:
            raise ValueError("adalora needs the total number of optimizer steps (set training.max_steps or epochs)")
        return AdaLoraConfig(task_type=task, init_r=method.init_r, target_r=method.target_r,
                             lora_alpha=method.lora_alpha, lora_dropout=method.lora_dropout, tinit=method.tinit,
                             tfinal=method.tfinal, deltaT=method.delta_t, total_step=total_steps,
                             target_modules=_targets(method, model), fan_in_fan_out=conv1d)
    if isinstance(method, PrefixTuningMethod):
        return PrefixTuningConfig(task_type=task, num_virtual_tokens=method.num_virtual_tokens,
                                  prefix_projection=method.prefix_projection,
                                  encoder_hidden_size=method.encoder_hidden_size)
    if isinstance(method, PTuningMethod):
        return PromptEncoderConfig(task_type=task, num_virtual_tokens=method.num_virtual_tokens,
                                   encoder_hidden_size=method.encoder_hidden_size,
                                   encoder_reparameterization_type=method.encoder_type)
    text_init = {}
    if method.init_text:
        text_init = {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": method.init_text,
                     "tokenizer_name_or_path": tokenizer_path}
    if isinstance(method, PromptTuningMethod):
        return PromptTuningConfig(task_type=task, num_virtual_tokens=method.num_virtual_tokens, **text_init)
    if isinstance(method, MultitaskPromptTuningMethod):
        return MultitaskPromptTuningConfig(task_type=task, num_virtual_tokens=method.num_virtual_tokens,
                                           num_tasks=method.num_tasks, num_ranks=method.num_ranks,
                                           **(text_init or {"prompt_tuning_init": "RANDOM"}))
    raise ValueError(f"'{method.name}' is not a PEFT method")


@dataclass
class PreparedModel:
    """A model ready for the trainer.

    Attributes:
        model: The model to train (a ``PeftModel`` for PEFT methods).
        callbacks: Trainer callbacks the method needs (gradual unfreezing, AdaLoRA budget).
        optimizer: A ready optimizer when the method needs its own parameter groups, else None (Trainer default).
        unfreezing: The gradual-unfreezing callback, for its history.
    """

    model: torch.nn.Module
    callbacks: list
    optimizer: torch.optim.Optimizer | None = None
    unfreezing: GradualUnfreezingCallback | None = None


def prepare_model(model, method, *, tokenizer_path: str | None = None, total_steps: int | None = None,
                  learning_rate: float = 1e-4, weight_decay: float = 0.0) -> PreparedModel:
    """Apply a method to a loaded base model.

    Full fine-tuning and the freezing methods keep the transformers model; PEFT methods wrap it in a ``PeftModel``
    (QLoRA first prepares the 4-bit model for training: fp32 norms, input gradients).
    """
    if isinstance(method, FullFineTuning):
        model.requires_grad_(True)
        return PreparedModel(model, [])
    if isinstance(method, LayerFreezingMethod):
        model.requires_grad_(True)
        freeze_layers(model, method)
        return PreparedModel(model, [])
    if isinstance(method, GradualUnfreezingMethod):
        groups = unfreezing_groups(model, method.blocks_per_group)
        optimizer = gradual_unfreezing_optimizer(model, groups, learning_rate, weight_decay, method.lr_decay)
        callback = GradualUnfreezingCallback(model, groups, method.unfreeze_every_steps)
        return PreparedModel(model, [callback], optimizer, callback)
    from peft import get_peft_model, prepare_model_for_kbit_training

    if isinstance(method, QLoraMethod):
        model = prepare_model_for_kbit_training(model)
    peft_model = get_peft_model(model, to_peft_config(method, model, tokenizer_path, total_steps))
    if isinstance(method, MultitaskPromptTuningMethod):
        from finetune.models.causal import use_default_task

        use_default_task(peft_model, method.task_id)
    callbacks = [AdaLoraBudgetCallback()] if isinstance(method, AdaLoraMethod) else []
    return PreparedModel(peft_model, callbacks)


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (shared tensors counted once)."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
