"""The chunked causal-LM loss equals the model's own loss and gradients, trains identically, and refuses what it
cannot reproduce."""

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.loss.loss_utils import ForCausalLMLoss

from finetune.data.text import load_text_data
from finetune.generation.chunked_loss import causal_lm_parts, check_chunkable, chunked_causal_lm_loss
from finetune.generation.training import causal_lm_setup
from finetune.params import (
    CausalLmParams,
    DemoText,
    DpoParams,
    GenerationTrainingParams,
    LmDistillationParams,
    MethodComparisonParams,
    MultiGpuSftParams,
    SftParams,
    TextDataParams,
)

VOCAB = 61  # prime, so no chunk size lines up with it either


def _model(kind: str, tied: bool):
    torch.manual_seed(0)
    if kind == "gpt2":
        config = GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=32, vocab_size=VOCAB, bos_token_id=0,
                            eos_token_id=0, tie_word_embeddings=tied, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        return GPT2LMHeadModel(config)
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=VOCAB, max_position_embeddings=32, bos_token_id=0,
                         eos_token_id=0, tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


def _batch():
    """3 rows × 10 positions = 30 positions; row 0's first four labels and row 2's last three are -100 (a prompt and
    padding), so 30 − 3 (last positions) − 3 (row 0 predicts labels 1..3) − 3 (row 2) = 21 positions are scored."""
    ids = torch.randint(VOCAB, (3, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[0, :4] = -100
    labels[2, 7:] = -100
    return ids, labels


@pytest.mark.parametrize("chunk", [1, 5, 7, 30, 1000])  # 5 and 30 divide the 30 positions, 1, 7 and 1000 do not
@pytest.mark.parametrize("num_items", [None, 40])
def test_loss_and_gradients_equal_transformers_for_the_same_hidden_states(chunk, num_items):
    """Against ``ForCausalLMLoss`` itself on the same hidden states, LM-head weight and bias (fp32 logits)."""
    ids, labels = _batch()
    generator = torch.Generator().manual_seed(2)
    hidden = torch.randn(3, 10, 16, generator=generator, requires_grad=True)
    weight = torch.randn(VOCAB, 16, generator=generator, requires_grad=True)
    bias = torch.randn(VOCAB, generator=generator, requires_grad=True)
    reference = ForCausalLMLoss(F.linear(hidden, weight, bias), labels, VOCAB, num_items_in_batch=num_items)
    expected = torch.autograd.grad(reference, (hidden, weight, bias))
    loss = chunked_causal_lm_loss(hidden, weight, labels, chunk, bias, num_items_in_batch=num_items)
    got = torch.autograd.grad(loss, (hidden, weight, bias))
    torch.testing.assert_close(loss, reference, atol=1e-5, rtol=0)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=0)
    if num_items is None:  # the mean over the 21 scored positions, as the docstring of _batch counts them
        sums = F.cross_entropy(F.linear(hidden, weight, bias)[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1),
                               reduction="sum")
        torch.testing.assert_close(loss, sums / 21, atol=1e-5, rtol=0)


def test_shift_labels_are_scored_without_shifting():
    ids, labels = _batch()
    hidden, weight = torch.randn(3, 10, 16), torch.randn(VOCAB, 16)
    shifted = F.pad(labels, (0, 1), value=-100)[:, 1:]
    torch.testing.assert_close(chunked_causal_lm_loss(hidden, weight, None, 4, shift_labels=shifted),
                               chunked_causal_lm_loss(hidden, weight, labels, 4))


def _own_and_chunked(model, chunk, num_items):
    ids, labels = _batch()
    own = model(input_ids=ids, labels=labels, num_items_in_batch=num_items).loss
    params = [p for p in model.parameters() if p.requires_grad]
    expected = torch.autograd.grad(own, params)
    body, head = causal_lm_parts(model)
    loss = chunked_causal_lm_loss(body(input_ids=ids).last_hidden_state, head.weight, labels, chunk, head.bias,
                                  num_items_in_batch=num_items)
    return own, expected, loss, torch.autograd.grad(loss, params)


@pytest.mark.parametrize(("kind", "tied"), [("llama", False), ("llama", True), ("gpt2", True), ("gpt2", False)])
@pytest.mark.parametrize(("chunk", "num_items"), [(7, None), (5, 40), (1000, None)])
def test_every_parameter_gets_the_models_own_gradient(kind, tied, chunk, num_items):
    """Through the whole model: loss and the gradient of every parameter (embeddings, blocks, untied head)."""
    model = _model(kind, tied)
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    own, expected, loss, got = _own_and_chunked(model, chunk, num_items)
    torch.testing.assert_close(loss, own, atol=1e-5, rtol=0)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_lora_adapters_get_the_models_own_gradient(kind):
    from peft import LoraConfig, get_peft_model

    targets = ["c_attn"] if kind == "gpt2" else ["q_proj", "v_proj"]
    model = get_peft_model(_model(kind, True), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                          target_modules=targets, init_lora_weights=False))
    own, expected, loss, got = _own_and_chunked(model, 7, 40)
    assert len(got) == 2 * 2 * len(targets)  # lora_A and lora_B of each target in each of the 2 layers
    torch.testing.assert_close(loss, own, atol=1e-5, rtol=0)
    for g, e in zip(got, expected, strict=True):
        assert e.abs().max() > 0
        torch.testing.assert_close(g, e, atol=1e-5, rtol=0)


def test_without_gradients_no_chunk_is_checkpointed_and_the_loss_is_the_same():
    model = _model("llama", False)
    ids, labels = _batch()
    with torch.no_grad():
        own = model(input_ids=ids, labels=labels).loss
        body, head = causal_lm_parts(model)
        loss = chunked_causal_lm_loss(body(input_ids=ids).last_hidden_state, head.weight, labels, 7)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, own, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data = TextDataParams(source=DemoText(output_dir=tmp_path_factory.mktemp("text"), num_documents=20),
                          validation_fraction=0.2, test_fraction=0.0)
    train, validation, _ = load_text_data(data)
    return train, validation


def _train(corpus, tmp_path, model, method, chunk):
    training = {"per_device_batch_size": 2, "gradient_accumulation_steps": 2, "learning_rate": 1e-2,
                "warmup_ratio": 0.0, "max_steps": 3, "logging_steps": 1, "eval_steps": 3, "device": "cpu",
                "precision": "fp32", "load_best_model_at_end": False, "chunked_loss_tokens": chunk,
                "checkpoints": {"every_steps": None}}
    params = CausalLmParams(model=model, method=method, training=training, block_size=32)
    setup = causal_lm_setup(*corpus, params, tmp_path)
    setup.trainer.train()
    losses = [e["loss"] for e in setup.trainer.state.log_history if "loss" in e]
    weights = {n: p.detach().clone() for n, p in setup.trainer.model.named_parameters() if p.requires_grad}
    return losses, setup.trainer.evaluate()["eval_loss"], weights


@pytest.mark.parametrize(("model", "method"), [({"kind": "tiny_gpt2"}, {"name": "full"}),
                                               ({"kind": "tiny_llama"}, {"name": "lora", "lora_dropout": 0.0})])
def test_training_with_chunked_loss_updates_the_weights_as_the_models_own_loss(corpus, tmp_path, model, method):
    """3 updates of 2 micro-batches of 2 blocks × 32 tokens (gradient accumulation: the Trainer passes
    num_items_in_batch), the same seed; chunks of 24 positions do not divide the 64 of a micro-batch. GPT-2's
    dropout draws the same masks on both paths (the body runs the same modules in the same order)."""
    own_losses, own_eval, own_weights = _train(corpus, tmp_path / "own", model, method, None)
    losses, eval_loss, weights = _train(corpus, tmp_path / "chunked", model, method, 24)
    assert len(losses) == 3 and losses == pytest.approx(own_losses, abs=1e-5)
    assert eval_loss == pytest.approx(own_eval, abs=1e-5)
    assert weights.keys() == own_weights.keys()
    moved = 0
    for name, value in weights.items():
        torch.testing.assert_close(value, own_weights[name], atol=1e-5, rtol=1e-4, msg=name)
        moved += 0 if method["name"] == "lora" and "lora_A" in name else 1
    assert moved > 0


# ------------------------------------------------------------------------------------------ refused cases


def test_models_that_change_their_logits_after_the_head_are_refused():
    from transformers import CohereConfig, CohereForCausalLM, Gemma2Config, Gemma2ForCausalLM

    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 1, "vocab_size": VOCAB, "head_dim": 8}
    with pytest.raises(ValueError, match=r"gemma2 changes its logits .*final_logit_softcapping=30.0"):
        check_chunkable(Gemma2ForCausalLM(Gemma2Config(**small, final_logit_softcapping=30.0)), 8)
    with pytest.raises(ValueError, match=r"cohere changes its logits .*logit_scale=0.0625"):
        check_chunkable(CohereForCausalLM(CohereConfig(**small, logit_scale=0.0625)), 8)


def test_a_head_that_differs_from_the_weight_product_is_caught_by_the_probe():
    """No config attribute says so, but the model's own loss (logits doubled by a hook) differs on random tokens."""
    model = _model("llama", False)
    check_chunkable(model, 8)
    model.lm_head.register_forward_hook(lambda module, args, output: 2 * output)
    with pytest.raises(ValueError, match="chunked loss .* differs from LlamaForCausalLM's own"):
        check_chunkable(model, 8)
    assert model.training  # the probe's eval mode is undone


def test_prompt_learning_peft_models_are_refused_at_run_time():
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(_model("llama", False), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    with pytest.raises(ValueError, match="prompt_tuning adds virtual tokens"):
        causal_lm_parts(model)


@pytest.mark.parametrize("method", ["prefix_tuning", "prompt_tuning", "p_tuning", "multitask_prompt_tuning"])
def test_prompt_learning_methods_are_refused_at_config_time(method):
    with pytest.raises(ValueError, match=f"method {method} adds virtual tokens .* leave chunked_loss_tokens unset"):
        CausalLmParams(model={"kind": "tiny_llama"}, method={"name": method}, training={"chunked_loss_tokens": 64})


def test_trainers_that_avoid_or_need_full_logits_refuse_it_at_config_time():
    chunked = {"chunked_loss_tokens": 64}
    model = {"kind": "tiny_llama"}
    for build in (lambda: SftParams(model=model, training=chunked),
                  lambda: MultiGpuSftParams(model=model, training=chunked),
                  lambda: MethodComparisonParams(model=model, methods=[{"name": "full"}, {"name": "lora"}],
                                                 training=chunked)):
        with pytest.raises(ValueError, match="training.chunked_loss_tokens: TRL's SFTTrainer already"):
            build()
    with pytest.raises(ValueError, match="training.chunked_loss_tokens: TRL's DPOTrainer already"):
        DpoParams(model=model, training=chunked)
    with pytest.raises(ValueError, match="training.chunked_loss_tokens: the student's KL term needs its full logits"):
        LmDistillationParams(teacher=model, student="teacher", training=chunked)
    # The teacher's own training is plain cross-entropy through causal_lm_setup: it may chunk.
    distillation = LmDistillationParams(teacher=model, student="teacher", teacher_training=chunked)
    assert distillation.teacher_params().training.chunked_loss_tokens == 64
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        GenerationTrainingParams(chunked_loss_tokens=0)
    assert GenerationTrainingParams().chunked_loss_tokens is None
