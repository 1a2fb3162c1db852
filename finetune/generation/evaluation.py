"""Evaluation of causal language models: perplexity, generation metrics, multiple choice, few-shot baselines.

Everything here takes a loaded ``(model, tokenizer)`` pair (a transformers causal LM or a PEFT model around one)
and plain Python data, so the same functions run in a step, a test or a benchmark.

- Perplexity is token-weighted, ``exp(total NLL / predicted tokens)``, with the sliding window of the Hugging Face
  perplexity guide: windows of ``block_size`` tokens advance by ``stride``, and each window scores only the tokens
  no earlier window scored. With ``stride < block_size`` every token after the first is predicted exactly once,
  with ``block_size - stride`` tokens of context carried over; with ``stride == block_size`` the windows are
  disjoint blocks and each block's first token is not predicted (as the trainer's loss on packed blocks, so the
  result is ``exp(eval_loss)``).
- ROUGE and BLEU call the libraries that ``evaluate``'s ``rouge`` and ``sacrebleu`` metrics wrap (``rouge_score``,
  ``sacrebleu``) with the same settings, because ``evaluate.load`` fetches its metric scripts from the hub.
- Multiple-choice accuracy follows lm-evaluation-harness: the log-likelihood of each option's text as the
  continuation of the question prompt, argmax over options (``acc``), optionally divided by the option's length in
  tokens or characters (``acc_norm`` uses characters).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from finetune.data.arc import MultipleChoiceQuestion
from finetune.params import GenerationEvalParams

LengthNormalization = Literal["none", "token", "char"]

ARC_PROMPT = "Question: {stem}\nAnswer:"
"""lm-evaluation-harness's ARC prompt; each option is scored as ``" " + text`` after it."""

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


# ------------------------------------------------------------------------------------------ log-likelihood


def _device(model):
    return next(model.parameters()).device


def _max_length(model) -> int | None:
    config = model.config
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def token_logprobs(
    model, sequences: Sequence[Sequence[int]], batch_size: int = 8, num_scored: Sequence[int] | None = None
) -> list[list[float]]:
    """Log-probability of each sequence's last tokens given the tokens before them.

    Sequences are sorted by length and right-padded per batch (padding at the end cannot change the earlier
    positions of a causal model). Only the scored positions' logits go through the float32 log-softmax, so the
    extra memory is (scored tokens × vocabulary), not (batch × length × vocabulary).

    Args:
        model: A causal LM (or PEFT model); put in eval mode for the call and restored afterwards.
        sequences: Token ids; each needs at least 2 tokens.
        batch_size: Sequences per forward pass.
        num_scored: How many final tokens of each sequence to score (1 to length - 1); default all but the first.

    Returns:
        For each sequence, ``num_scored`` values in order: log p(token t | tokens 0..t-1) for its last tokens t.
    """
    import torch

    if any(len(s) < 2 for s in sequences):
        raise ValueError("every sequence needs at least 2 tokens (one to condition on, one to score)")
    scored = [len(s) - 1 for s in sequences] if num_scored is None else list(num_scored)
    if any(not 1 <= k < len(s) for k, s in zip(scored, sequences, strict=True)):
        raise ValueError("num_scored must be between 1 and the sequence length - 1")
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    results: list[list[float]] = [[] for _ in sequences]
    device, was_training = _device(model), model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                members = order[start : start + batch_size]
                width = len(sequences[members[0]])
                ids = torch.zeros((len(members), width), dtype=torch.long)
                mask = torch.zeros((len(members), width), dtype=torch.long)
                rows, positions, targets = [], [], []
                for row, i in enumerate(members):
                    seq, k = list(sequences[i]), scored[i]
                    ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                    # The logits at position p predict token p + 1.
                    rows += [row] * k
                    positions += range(len(seq) - 1 - k, len(seq) - 1)
                    targets += seq[len(seq) - k :]
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                # Prompt-tuning adapters prepend virtual tokens to the outputs; the last `width` are ours.
                logits = logits[:, -width:]
                picked = logits[torch.tensor(rows, device=device), torch.tensor(positions, device=device)].float()
                values = torch.log_softmax(picked, dim=-1).gather(-1, torch.tensor(targets, device=device)[:, None])
                flat, offset = values[:, 0].tolist(), 0
                for i in members:
                    results[i] = flat[offset : offset + scored[i]]
                    offset += scored[i]
    finally:
        model.train(was_training)
    return results


# ---------------------------------------------------------------------------------------------- perplexity


@dataclass(frozen=True)
class PerplexityResult:
    """Token-weighted perplexity.

    Attributes:
        perplexity: ``exp(mean_nll)``.
        mean_nll: Total negative log-likelihood (nats) over ``num_tokens``.
        num_tokens: Predicted tokens (every token but the first of each sequence).
        window_perplexity: Perplexity of each scored window, keyed by a hash of its token ids and number of
            scored tokens: two models with the same tokenizer share the keys, so they can be compared window by
            window (a paired test); different tokenizers share none.
    """

    perplexity: float
    mean_nll: float
    num_tokens: int
    window_perplexity: dict[str, float] = field(default_factory=dict)


def sliding_windows(length: int, block_size: int, stride: int) -> list[tuple[int, int, int]]:
    """The Hugging Face guide's windows over a sequence of ``length`` tokens.

    Args:
        length: Tokens in the sequence.
        block_size: Tokens per window (the model's context).
        stride: How far each window starts after the previous one (``<= block_size``).

    Returns:
        ``(begin, end, targets)`` per window: tokens ``begin:end`` are fed and the last ``targets`` of them are
        scored; a window's first token never is, as it has no context. With ``stride < block_size`` targets sum
        to ``length - 1``; with ``stride == block_size`` to ``length`` minus the number of windows.
    """
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride must be between 1 and block_size ({block_size}), got {stride}")
    windows, previous_end = [], 0
    for begin in range(0, max(length - 1, 1), stride):
        end = min(begin + block_size, length)
        targets = min(end - previous_end, end - begin - 1)
        windows.append((begin, end, targets))
        previous_end = end
        if end == length:
            break
    return windows


def perplexity(
    model,
    data: Sequence[str] | Sequence[Sequence[int]],
    tokenizer=None,
    block_size: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
) -> PerplexityResult:
    """Token-weighted perplexity of texts or pre-tokenized blocks, with a sliding window.

    Texts are tokenized and joined into one stream, each followed by the EOS token, as causal-LM training packs
    them (``group_texts``): with ``stride == block_size`` the windows are the training blocks, plus the final
    partial block that training drops. Pre-tokenized blocks are scored each on its own. A sequence longer than
    ``block_size`` is covered by the sliding window of :func:`sliding_windows`.

    Args:
        model: A causal LM (or PEFT model).
        data: Texts (needs ``tokenizer``) or token-id blocks.
        tokenizer: The model's tokenizer, for texts.
        block_size: Window length; default the model's maximum positions.
        stride: Window step; default ``block_size`` (disjoint windows). A smaller stride gives each scored
            token more context at the price of ``block_size / stride`` times the compute.
        batch_size: Windows per forward pass.

    Returns:
        The perplexity, mean NLL and the number of predicted tokens.
    """
    if not data:
        raise ValueError("perplexity needs at least one text or block")
    if isinstance(data[0], str):
        if tokenizer is None:
            raise ValueError("perplexity of texts needs the tokenizer")
        eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
        sequences = [[t for ids in tokenizer(list(data), add_special_tokens=False)["input_ids"] for t in ids + eos]]
    else:
        sequences = [list(block) for block in data]
    block_size = block_size or _max_length(model)
    if block_size is None:
        raise ValueError("block_size is required: the model config names no maximum length")
    stride = stride or block_size
    windows, targets = [], []
    for seq in sequences:
        for begin, end, n in sliding_windows(len(seq), block_size, stride):
            if n > 0:
                windows.append(seq[begin:end])
                targets.append(n)
    if not windows:
        raise ValueError("nothing to score: every sequence is shorter than 2 tokens")
    logprobs = token_logprobs(model, windows, batch_size, targets)
    nll = -sum(sum(lp) for lp in logprobs)
    count = sum(targets)
    per_window = {
        hashlib.sha256(f"{n}:{','.join(map(str, window))}".encode()).hexdigest()[:16]: math.exp(-sum(lp) / n)
        for window, n, lp in zip(windows, targets, logprobs, strict=True)
    }
    return PerplexityResult(perplexity=math.exp(nll / count), mean_nll=nll / count, num_tokens=count,
                            window_perplexity=per_window)


# ---------------------------------------------------------------------------------------------- generation


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string (unchanged when none occurs)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


def _virtual_tokens(model) -> int:
    """Positions a prompt-learning adapter (prompt / P- / multitask prompt tuning) prepends to every input."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not getattr(config, "is_prompt_learning", False) or _is_prefix_style(config):
        return 0
    return config.num_virtual_tokens


def _is_prefix_style(config) -> bool:
    return str(getattr(config, "peft_type", "")).endswith(("PREFIX_TUNING", "CARTRIDGE"))


def _generate_new_tokens(model, input_ids, attention_mask, config):
    """Greedy continuation ids of a left-padded batch (the prompt tokens removed).

    Adapters that prepend virtual token embeddings (prompt tuning, P-tuning, multitask prompt tuning) generate
    through the base model with the prompt embeddings written into ``inputs_embeds`` here: PEFT's own
    ``generate`` re-injects the virtual tokens at every decoding step once the library renames its cache argument
    (transformers 5.25 calls it ``cache``; PEFT 0.21 looks for ``past_key_values``), which turned greedy output
    into repeated tokens and overran GPT-2's positions. Done here, it is the same computation as the adapter's
    forward: virtual tokens first, then the (left-padded) prompt, positions counted from the attention mask.
    """
    import torch

    adapter = getattr(model, "active_peft_config", None)
    if adapter is not None and getattr(adapter, "is_prompt_learning", False) and _is_prefix_style(adapter):
        # Prefix tuning: the same rename makes PEFT's ``generate`` drop the learned key/value prefix (its output
        # equalled the base model's), so the prefix goes in here as the starting cache of the base model's
        # ``generate``, with the mask extended over it, as the adapter's forward does.
        prefix = model.get_prompt(batch_size=input_ids.shape[0])
        prefix_mask = torch.ones((input_ids.shape[0], adapter.num_virtual_tokens), dtype=attention_mask.dtype,
                                 device=attention_mask.device)
        output = model.get_base_model().generate(input_ids=input_ids, cache=prefix, generation_config=config,
                                                 attention_mask=torch.cat((prefix_mask, attention_mask), dim=1))
        return output[:, input_ids.shape[1] :]
    if not _virtual_tokens(model):
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
        return output[:, input_ids.shape[1] :]
    base = model.get_base_model()
    prompts = model.get_prompt(batch_size=input_ids.shape[0])
    embeds = model.word_embeddings(input_ids)
    inputs_embeds = torch.cat((prompts.to(embeds.dtype), embeds), dim=1)
    prefix_mask = torch.ones(prompts.shape[:2], dtype=attention_mask.dtype, device=attention_mask.device)
    mask = torch.cat((prefix_mask, attention_mask), dim=1)
    # Decoder-only models return only the new tokens when generation starts from embeddings.
    return base.generate(inputs_embeds=inputs_embeds, attention_mask=mask, generation_config=config)


def generate_responses(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    stop: Sequence[str] = (),
) -> list[str]:
    """Greedy responses to prompts, batched with left padding.

    Prompts longer than the model's context minus ``max_new_tokens`` keep their last tokens (the question at the
    end of a few-shot prompt matters more than the first example).

    Args:
        model: A causal LM (or PEFT model).
        tokenizer: Its tokenizer; needs a pad token (``load_causal_lm`` sets EOS when there is none).
        prompts: Rendered prompts (the model continues them).
        max_new_tokens: Tokens generated at most per prompt.
        batch_size: Prompts per ``generate`` call.
        stop: Strings at which a response is cut (e.g. the few-shot separator).

    Returns:
        The decoded new text of each prompt, special tokens removed.
    """
    import torch
    from transformers import GenerationConfig

    limit = _max_length(model)
    if limit is not None and max_new_tokens >= limit:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt in the model's {limit} "
                         "positions")
    # The model's own stop tokens win: chat models often end turns with a token other than the tokenizer's EOS.
    model_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id if model_eos is None else model_eos,
    )
    sides = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    device, was_training = _device(model), model.training
    model.eval()
    responses: list[str] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                texts = list(prompts[start : start + batch_size])
                # A chat template already wrote the BOS token into the text; adding it again would double it.
                templated = bool(tokenizer.bos_token) and all(t.startswith(tokenizer.bos_token) for t in texts)
                batch = tokenizer(
                    texts,
                    add_special_tokens=not templated,
                    return_tensors="pt",
                    padding=True,
                    truncation=limit is not None,
                    max_length=None if limit is None else limit - max_new_tokens - _virtual_tokens(model),
                ).to(device)
                new = _generate_new_tokens(model, batch["input_ids"], batch["attention_mask"], config)
                decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
                responses.extend(truncate_at_stop(text, stop) for text in decoded)
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = sides
        model.train(was_training)
    return responses


# ------------------------------------------------------------------------------------------ text metrics


def rouge_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    rouge_types: Sequence[str] = ROUGE_TYPES,
    use_stemmer: bool = False,
) -> dict[str, list[float]]:
    """Per-sample ROUGE F-measures with ``rouge_score``, as ``evaluate``'s ``rouge`` metric computes them.

    Same scorer and defaults as ``evaluate.load("rouge")`` (no stemmer, the default tokenizer: lowercase,
    non-alphanumerics as spaces). ``evaluate`` reports a bootstrap-resampled median by default; the corpus value
    here is the plain mean of these lists (``use_aggregator=False`` then mean), which is deterministic.

    Returns:
        rouge type -> F-measure of each (prediction, reference) pair.
    """
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer)
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references, strict=True)]
    return {t: [s[t].fmeasure for s in scores] for t in rouge_types}


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) with ``sacrebleu``'s defaults, as ``evaluate``'s ``sacrebleu`` metric computes it.

    13a tokenization, case-sensitive, exponential smoothing, one reference per prediction.
    """
    import sacrebleu

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def generation_metrics(predictions: Sequence[str], references: Sequence[str], split: str = "test") -> dict[str, float]:
    """``<split>_rouge1``, ``<split>_rouge2``, ``<split>_rougeL`` (means of F-measures) and ``<split>_bleu``."""
    per_sample = rouge_scores(predictions, references)
    metrics = {f"{split}_{t}": sum(v) / len(v) for t, v in per_sample.items()}
    metrics[f"{split}_bleu"] = corpus_bleu(predictions, references)
    return metrics


def sample_table(
    prompts: Sequence[str],
    references: Sequence[str],
    generations: Sequence[str],
    num_samples: int,
    seed: int = 0,
) -> list[dict[str, object]]:
    """Rows for error analysis: a seeded sample of examples, worst ROUGE-L first.

    Args:
        prompts: The prompts as the model saw them.
        references: Reference responses.
        generations: Generated responses.
        num_samples: Rows to keep (all when there are fewer examples).
        seed: Seed of the sample, so the table is the same on every run.

    Returns:
        ``{"prompt", "reference", "generated", "rougeL"}`` rows sorted by ROUGE-L ascending.
    """
    rouge_l = rouge_scores(generations, references, ("rougeL",))["rougeL"]
    picked = random.Random(seed).sample(range(len(prompts)), min(num_samples, len(prompts)))
    rows = [
        {"prompt": prompts[i], "reference": references[i], "generated": generations[i], "rougeL": rouge_l[i]}
        for i in picked
    ]
    return sorted(rows, key=lambda row: row["rougeL"])


# ------------------------------------------------------------------------------------------ multiple choice


@dataclass(frozen=True)
class ChoiceScore:
    """The model's scores for one question's options.

    Attributes:
        loglikelihoods: Sum of log p(option tokens | prompt) per option.
        num_tokens: Scored tokens per option.
        num_chars: Characters per option text (lm-evaluation-harness's ``acc_norm`` denominator).
        answer: Index of the correct option.
    """

    loglikelihoods: tuple[float, ...]
    num_tokens: tuple[int, ...]
    num_chars: tuple[int, ...]
    answer: int

    def prediction(self, normalization: LengthNormalization = "none") -> int:
        """The chosen option: argmax of the (normalised) log-likelihood; ties go to the first option."""
        denominators = {"none": None, "token": self.num_tokens, "char": self.num_chars}[normalization]
        scores = (
            self.loglikelihoods
            if denominators is None
            else [ll / max(d, 1) for ll, d in zip(self.loglikelihoods, denominators, strict=True)]
        )
        return max(range(len(scores)), key=lambda i: (scores[i], -i))


def _leading_special_ids(tokenizer) -> list[int]:
    """The ids the tokenizer puts before any text (Llama's BOS; nothing for GPT-2)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return list(full[:i])
    return []


def encode_pair(tokenizer, context: str, continuation: str, prefix: Sequence[int] = ()) -> tuple[list[int], list[int]]:
    """Token ids of a context and its continuation, as lm-evaluation-harness splits them.

    Trailing spaces of the context move to the continuation, the whole string is encoded once and the
    continuation is what follows the context's own encoding, so the option is tokenized as the model would see it
    in running text. If the context's encoding is not a prefix of the whole (a merge across the boundary), the two
    parts are encoded separately. An empty context becomes the EOS token, so the first option token is scored.

    Returns:
        ``(context ids, continuation ids)``; ``prefix`` (e.g. BOS) starts the context.
    """
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    whole, ctx = encode(context + continuation), encode(context)
    cont = whole[len(ctx) :] if whole[: len(ctx)] == ctx else encode(continuation)
    ctx = list(prefix) + ctx
    if not ctx:
        ctx = [tokenizer.eos_token_id]
    if not cont:
        raise ValueError(f"continuation {continuation!r} has no tokens")
    return ctx, cont


def score_multiple_choice(
    model,
    tokenizer,
    questions: Sequence[MultipleChoiceQuestion],
    prompt_template: str = ARC_PROMPT,
    few_shot_prefix: str = "",
    batch_size: int = 8,
    max_length: int | None = None,
) -> list[ChoiceScore]:
    """Log-likelihood of every option of every question as the continuation of its prompt.

    The prompt is ``few_shot_prefix + prompt_template.format(stem=...)`` and each option is scored as
    ``" " + text``; only option tokens are summed, never the prompt's. A too-long input keeps its last tokens.

    Args:
        model: A causal LM (or PEFT model).
        tokenizer: Its tokenizer.
        questions: The questions.
        prompt_template: Format string with ``{stem}``.
        few_shot_prefix: Solved examples before the question (see :func:`few_shot_mc_prefix`).
        batch_size: Sequences per forward pass.
        max_length: Longest input; default the model's maximum positions.

    Returns:
        One :class:`ChoiceScore` per question.
    """
    prefix = _leading_special_ids(tokenizer)
    limit = max_length or _max_length(model)
    sequences, spans = [], []
    for q in questions:
        context = few_shot_prefix + prompt_template.format(stem=q.stem)
        for choice in q.choices:
            ctx, cont = encode_pair(tokenizer, context, " " + choice, prefix)
            seq = (ctx + cont)[-limit:] if limit else ctx + cont
            sequences.append(seq)
            spans.append(min(len(cont), len(seq) - 1))
    logprobs = token_logprobs(model, sequences, batch_size, spans)
    results, i = [], 0
    for q in questions:
        n = len(q.choices)
        lls = tuple(sum(lp) for lp in logprobs[i : i + n])
        results.append(ChoiceScore(lls, tuple(spans[i : i + n]), tuple(len(c) for c in q.choices), q.answer))
        i += n
    return results


def multiple_choice_metrics(
    scores: Sequence[ChoiceScore], normalization: LengthNormalization = "char", split: str = "test"
) -> dict[str, float]:
    """``<split>_mc_accuracy`` (raw log-likelihood) and ``<split>_mc_accuracy_norm`` (length-normalised)."""
    if not scores:
        raise ValueError("no questions were scored")
    raw = sum(s.prediction("none") == s.answer for s in scores) / len(scores)
    norm = sum(s.prediction(normalization) == s.answer for s in scores) / len(scores)
    return {f"{split}_mc_accuracy": raw, f"{split}_mc_accuracy_norm": norm}


# ------------------------------------------------------------------------------------------------ few-shot


def choose_shots(num_examples: int, k: int, seed: int) -> list[int]:
    """``k`` distinct example indices drawn with ``random.Random(seed)`` (the same shots for every question)."""
    if k > num_examples:
        raise ValueError(f"few_shot_k={k} but the train split has only {num_examples} examples")
    return random.Random(seed).sample(range(num_examples), k)


def few_shot_prefix(
    prompts: Sequence[str], responses: Sequence[str], k: int, seed: int, separator: str = "\n\n"
) -> str:
    """``k`` solved train examples, each ``prompt + response + separator``, to put before a test prompt."""
    return "".join(prompts[i] + responses[i] + separator for i in choose_shots(len(prompts), k, seed))


def few_shot_mc_prefix(
    questions: Sequence[MultipleChoiceQuestion],
    k: int,
    seed: int,
    prompt_template: str = ARC_PROMPT,
    separator: str = "\n\n",
) -> str:
    """``k`` solved train questions in the scoring layout (prompt, space, correct option, separator)."""
    return "".join(
        prompt_template.format(stem=questions[i].stem) + " " + questions[i].choices[questions[i].answer] + separator
        for i in choose_shots(len(questions), k, seed)
    )


# ------------------------------------------------------------------------------------------ example tables


def prompts_and_references(frame, template: str, tokenizer) -> tuple[list[str], list[str]]:
    """Prompts and reference answers of an example table.

    Args:
        frame: Rendered examples (``prompt`` and ``reference`` columns, as ``render_frame`` returns them) or raw
            ones (``messages``, as the instruction loaders return them), which are rendered here.
        template: The training prompt template (a ``{prompt}`` format string, or ``chat``), for raw examples.
        tokenizer: The model's tokenizer (its chat template and EOS token render the examples).

    Returns:
        ``(prompts, references)``.
    """
    from finetune.data.instructions import render_frame

    if "reference" not in frame.columns:
        frame = render_frame(frame, template, tokenizer)
    return frame["prompt"].tolist(), frame["reference"].tolist()


def evaluation_texts(frame, template: str | None, tokenizer) -> list[str]:
    """The texts perplexity is measured on: a text table's ``text`` column, or prompt + completion rendered with
    ``template`` (None only for a text table or rendered rows)."""
    from finetune.data.instructions import render_frame

    if "text" in frame.columns:
        return frame["text"].tolist()
    if "completion" not in frame.columns:
        if template is None:
            raise ValueError("template: prompt/response examples need the data's template to be rendered")
        frame = render_frame(frame, template, tokenizer)
    return [p + c for p, c in zip(frame["prompt"], frame["completion"], strict=True)]


def evaluate_generation(
    model,
    tokenizer,
    prompts: Sequence[str],
    references: Sequence[str],
    params: GenerationEvalParams,
    split: str = "test",
    prefix: str = "",
    stop: Sequence[str] = (),
) -> tuple[dict[str, float], list[dict[str, object]]]:
    """Generate for the first ``params.max_examples`` prompts; ROUGE/BLEU and the sample table.

    Args:
        model: A causal LM (or PEFT model).
        tokenizer: Its tokenizer.
        prompts: Held-out prompts.
        references: Their reference answers.
        params: Decoding and sampling settings.
        split: Metric name prefix.
        prefix: Text before every prompt (the few-shot examples); the sample table shows prompts without it.
        stop: Strings at which responses are cut.

    Returns:
        ``(metrics, sample rows)``.
    """
    metrics, rows, _ = evaluate_generation_per_example(model, tokenizer, prompts, references, params, split, prefix,
                                                       stop)
    return metrics, rows


def evaluate_generation_per_example(
    model,
    tokenizer,
    prompts: Sequence[str],
    references: Sequence[str],
    params: GenerationEvalParams,
    split: str = "test",
    prefix: str = "",
    stop: Sequence[str] = (),
) -> tuple[dict[str, float], list[dict[str, object]], list[float]]:
    """:func:`evaluate_generation` plus every evaluated example's ROUGE-L F-measure, in prompt order (the first
    ``params.max_examples`` prompts), for paired comparisons between models."""
    prompts, references = list(prompts[: params.max_examples]), list(references[: params.max_examples])
    if not prompts:
        raise ValueError("no held-out prompts to generate for")
    generated = generate_responses(
        model, tokenizer, [prefix + p for p in prompts], params.max_new_tokens, params.batch_size, stop
    )
    metrics = generation_metrics(generated, references, split)
    per_example = [float(v) for v in rouge_scores(generated, references, ("rougeL",))["rougeL"]]
    return metrics, sample_table(prompts, references, generated, params.num_samples, params.seed), per_example


def evaluate_few_shot(
    model,
    tokenizer,
    train: tuple[Sequence[str], Sequence[str]],
    test: tuple[Sequence[str], Sequence[str]],
    params: GenerationEvalParams,
    mc_train: Sequence[MultipleChoiceQuestion] = (),
    mc_test: Sequence[MultipleChoiceQuestion] = (),
    split: str = "test",
) -> tuple[dict[str, float], list[dict[str, object]], list[float]]:
    """The untrained model prompted with ``params.few_shot_k`` solved train examples.

    The same k examples (drawn once with ``params.seed``) precede every test prompt; responses are cut at the
    separator, where the model would start another example. Multiple choice, when questions are given, gets k
    solved train questions the same way. Metric names are the fine-tuned model's with a ``few_shot_`` prefix.

    Args:
        model: The base model (no fine-tuning).
        tokenizer: Its tokenizer.
        train: ``(prompts, references)`` to draw the examples from.
        test: ``(prompts, references)`` to evaluate on.
        params: Evaluation settings (``few_shot_k``, ``few_shot_separator``, ``seed`` ...).
        mc_train: Questions to draw solved examples from (needed when ``mc_test`` is given and k > 0).
        mc_test: Questions to score; empty skips multiple choice.
        split: Metric name prefix after ``few_shot_``.

    Returns:
        ``(metrics, sample rows, ROUGE-L of every evaluated test prompt in order)``; the last pairs with the
        fine-tuned model's values from :func:`evaluate_generation_per_example`.
    """
    k, separator = params.few_shot_k, params.few_shot_separator
    prefix = few_shot_prefix(train[0], train[1], k, params.seed, separator)
    metrics, rows, per_example = evaluate_generation_per_example(
        model, tokenizer, test[0], test[1], params, f"few_shot_{split}", prefix, stop=[separator] if k else []
    )
    if mc_test:
        mc_prefix = few_shot_mc_prefix(mc_train, k, params.seed, params.mc_prompt_template, separator) if k else ""
        scores = score_multiple_choice(
            model, tokenizer, mc_test, params.mc_prompt_template, mc_prefix, params.batch_size
        )
        metrics.update(multiple_choice_metrics(scores, params.length_normalization, f"few_shot_{split}"))
    return metrics, rows, per_example
