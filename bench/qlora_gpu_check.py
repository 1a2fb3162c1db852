"""QLoRA on a CUDA GPU: a 4-bit NF4 base loads, the LoRA adapters train, the merged save reloads in bf16.

A check of the QLoRA path on real hardware that needs neither TRL nor ``datasets`` (a transformers Trainer on a
list of packed blocks of the demo corpus, a tiny Llama-style model built from a config), so it runs on GPU boxes
without the full environment. Needs CUDA and bitsandbytes. Run: ``python -m bench.qlora_gpu_check [out.json]``.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer, default_data_collator

from finetune.data.demo_text import write_demo_corpus
from finetune.data.text import read_text_lines, split_documents
from finetune.device import require_cuda, resolve_placement
from finetune.generation.methods import prepare_model, trainable_parameters
from finetune.generation.training import group_texts, save_trained_model, to_training_arguments
from finetune.models.causal import load_causal_lm, load_pretrained_causal_lm, resolve_causal_model
from finetune.params import CausalLmParams, GenerationTrainingParams, QLoraMethod, TinyLlamaModel

SPEC = TinyLlamaModel(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=256, vocab_size=600)
TRAINING = GenerationTrainingParams(max_steps=60, per_device_batch_size=8, learning_rate=5e-3, logging_steps=20)


def main(argv: list[str]) -> int:
    require_cuda("the QLoRA check")
    out = Path(tempfile.mkdtemp(prefix="qlora_check_"))
    docs = split_documents(read_text_lines(write_demo_corpus(out / "text", 60)), "wikitext")
    resolved = resolve_causal_model(SPEC, out / "base", texts=docs)
    placement = resolve_placement("auto", "auto")
    model, tokenizer = load_pretrained_causal_lm(resolved, quantize_4bit=True, compute_dtype=torch.bfloat16)
    quantized = sorted({type(m).__name__ for m in model.modules() if "4bit" in type(m).__name__})
    method = QLoraMethod(r=8)
    peft_model = prepare_model(model, method).model
    trainable, total = trainable_parameters(peft_model)
    blocks = group_texts([tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs], 64,
                         tokenizer.eos_token_id)
    data = [{"input_ids": torch.tensor(b), "labels": torch.tensor(b)} for b in blocks]
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    args = to_training_arguments(TRAINING, out / "checkpoints", placement, has_validation=False)
    trainer = Trainer(model=peft_model, args=args, train_dataset=data, data_collator=default_data_collator)
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    changed = sum(not torch.equal(before[n], p.detach()) for n, p in peft_model.named_parameters() if n in before)
    batch = {k: v.cuda() for k, v in default_data_collator(data[:4]).items()}
    with torch.no_grad():
        adapter_loss = peft_model(**batch).loss.item()
    model_dir = save_trained_model(peft_model, tokenizer, out / "model", resolved, CausalLmParams(model=SPEC,
                                                                                                   method=method))
    merged, _ = load_causal_lm(model_dir, device="cuda")
    with torch.no_grad():
        merged_loss = merged(**batch).loss.item()
    result = {
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "placement": placement.precision,
        "quantized_modules": quantized, "trainable_parameters": trainable, "total_parameters": total,
        "adapter_tensors_changed": f"{changed}/{len(before)}", "ln_vocab": round(math.log(len(tokenizer)), 3),
        "train_losses": [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e],
        "train_seconds": round(seconds, 2), "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "loss_4bit_with_adapter": round(adapter_loss, 4), "loss_merged_bf16": round(merged_loss, 4),
        "saved_files": sorted(p.name for p in model_dir.iterdir()),
        "merged_dtype": str(next(merged.parameters()).dtype),
    }
    print(json.dumps(result))
    if argv:
        Path(argv[0]).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
