"""Generation evaluation: exact perplexity, greedy batched generation, text metrics, multiple choice, few-shot."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from finetune.data.arc import MultipleChoiceQuestion, load_arc_jsonl, write_demo_arc
from finetune.data.types import DataFormatError
from finetune.generation.evaluation import (
    ChoiceScore,
    choose_shots,
    corpus_bleu,
    encode_pair,
    evaluation_texts,
    few_shot_mc_prefix,
    few_shot_prefix,
    generate_responses,
    generation_metrics,
    multiple_choice_metrics,
    perplexity,
    prompts_and_references,
    rouge_scores,
    sample_table,
    score_multiple_choice,
    sliding_windows,
    token_logprobs,
    truncate_at_stop,
)
from finetune.models.causal import build_tiny_causal_lm, load_causal_lm
from finetune.params import TinyGpt2Model, TinyLlamaModel

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "question: what is two plus two? answer: four",
    "a tiny model reads a tiny corpus and writes tiny answers",
] * 10


class BigramLM(torch.nn.Module):
    """The logits at position t are ``table[token t]``: p(next | prefix) depends only on the last token.

    Its log-likelihoods are computable by hand and do not depend on how much context a window carries, so any
    difference between two windowings is a bookkeeping error.
    """

    def __init__(self, table: torch.Tensor, max_positions: int = 64):
        super().__init__()
        self.table = torch.nn.Parameter(table.clone())
        self.config = SimpleNamespace(max_position_embeddings=max_positions)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.table[input_ids])


def bigram_logprob(table: torch.Tensor, ids: list[int]) -> list[float]:
    """log p(ids[j] | ids[j-1]) for j = 1..n-1, straight from the table."""
    logp = torch.log_softmax(table.double(), dim=-1)
    return [logp[a, b].item() for a, b in zip(ids[:-1], ids[1:], strict=True)]


@pytest.fixture(scope="module")
def char_tokenizer():
    """One token per character (id 0 is EOS), so token positions are character positions."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = ["<eos>", *"abcdefghijklmnopqrstuvwxyzQA ?:\n."]
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(".|\n"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=64), tmp_path_factory.mktemp("gpt2"), TEXTS)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return build_tiny_causal_lm(TinyLlamaModel(max_position_embeddings=64), tmp_path_factory.mktemp("llama"), TEXTS)


# ---------------------------------------------------------------------------------------------- perplexity


def test_sliding_windows_follow_the_hf_guide():
    """Length 10, block 4, stride 2: windows start at 0, 2, 4, 6; the first scores 3 tokens (its first has no
    context), the others the 2 tokens past the previous end: 3 + 2 + 2 + 2 = 9 = every token but the first.
    Disjoint blocks of 4 lose each block's first token: 3 + 3 + 1 = 7 = 10 - 3 windows."""
    assert sliding_windows(10, 4, 2) == [(0, 4, 3), (2, 6, 2), (4, 8, 2), (6, 10, 2)]
    assert sliding_windows(10, 4, 4) == [(0, 4, 3), (4, 8, 3), (8, 10, 1)]
    assert sliding_windows(3, 8, 8) == [(0, 3, 2)]
    with pytest.raises(ValueError, match="stride"):
        sliding_windows(10, 4, 5)


def test_bigram_perplexity_golden_values():
    """Vocab 4; row i has logit ln 3 at (i+1) mod 4 and 0 elsewhere, so p(i+1 | i) = 3 / (3+1+1+1) = 1/2 and
    every other next token has 1/6. The blocks 0 1 2 3 0 (all expected) give exp(mean(ln 2)) = 2; the block
    0 1 1 gives exp((ln 2 + ln 6) / 2) = sqrt(12); together (token-weighted): exp((4 ln 2 + ln 2 + ln 6) / 6)."""
    table = torch.zeros(4, 4)
    for i in range(4):
        table[i, (i + 1) % 4] = math.log(3)
    model = BigramLM(table)
    assert perplexity(model, [[0, 1, 2, 3, 0]]).perplexity == pytest.approx(2.0, rel=1e-6)
    assert perplexity(model, [[0, 1, 1]]).perplexity == pytest.approx(math.sqrt(12), rel=1e-6)
    both = perplexity(model, [[0, 1, 2, 3, 0], [0, 1, 1]], batch_size=2)
    assert both.num_tokens == 6
    assert both.perplexity == pytest.approx(math.exp((5 * math.log(2) + math.log(6)) / 6), rel=1e-6)


def test_sliding_window_scores_every_token_once():
    """With a bigram model context does not matter, so a stride-3 window over 23 tokens must give exactly the
    perplexity of all 22 transitions; disjoint blocks of 5 drop the transitions into positions 5, 10, 15, 20."""
    torch.manual_seed(0)
    table = torch.randn(7, 7) * 2
    ids = torch.randint(0, 7, (23,)).tolist()
    model = BigramLM(table)
    every = bigram_logprob(table, ids)
    overlapping = perplexity(model, [ids], block_size=5, stride=3, batch_size=3)
    assert overlapping.num_tokens == 22
    assert overlapping.perplexity == pytest.approx(math.exp(-sum(every) / 22), rel=1e-5)
    disjoint = perplexity(model, [ids], block_size=5, stride=5)
    kept = [lp for j, lp in enumerate(every, start=1) if j % 5]
    assert disjoint.num_tokens == len(kept) == 18
    assert disjoint.perplexity == pytest.approx(math.exp(-sum(kept) / 18), rel=1e-5)


def test_uniform_model_perplexity_is_the_vocabulary_size(gpt2_dir):
    """A zero LM head gives all-zero logits: p = 1/V for every token, so perplexity = exp(ln V) = V exactly."""
    model, tokenizer = load_causal_lm(gpt2_dir)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    result = perplexity(model, TEXTS[:3], tokenizer, block_size=16, stride=8)
    stream = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in TEXTS[:3])  # + EOS each
    assert result.num_tokens == stream - 1
    assert result.perplexity == pytest.approx(model.config.vocab_size, rel=1e-5)


def test_perplexity_agrees_with_the_model_loss(gpt2_dir):
    """One block within the context is scored like the model's own loss; two blocks of different lengths
    (batched, right-padded) are weighted by their predicted tokens: exp((L1 (n1-1) + L2 (n2-1)) / (n1+n2-2))."""
    model, tokenizer = load_causal_lm(gpt2_dir)
    a = tokenizer(TEXTS[0])["input_ids"]
    b = tokenizer(TEXTS[1] + " " + TEXTS[2])["input_ids"]
    with torch.no_grad():
        loss_a = model(torch.tensor([a]), labels=torch.tensor([a])).loss.item()
        loss_b = model(torch.tensor([b]), labels=torch.tensor([b])).loss.item()
    assert perplexity(model, [a]).perplexity == pytest.approx(math.exp(loss_a), rel=1e-5)
    expected = math.exp((loss_a * (len(a) - 1) + loss_b * (len(b) - 1)) / (len(a) + len(b) - 2))
    assert perplexity(model, [a, b], batch_size=2).perplexity == pytest.approx(expected, rel=1e-5)
    assert model.training is False


# ---------------------------------------------------------------------------------------------- generation


def _greedy_by_hand(model, tokenizer, prompt: str, steps: int) -> str:
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(steps):
            token = model(input_ids=ids).logits[0, -1].argmax().item()
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return tokenizer.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_batched_left_padded_generation_is_greedy(which, request):
    """Prompts of different lengths in one left-padded batch decode exactly as an argmax loop on each alone."""
    model, tokenizer = load_causal_lm(request.getfixturevalue(f"{which}_dir"))
    prompts = ["the quick", "question: what is two plus two? answer:", "a tiny model reads"]
    batched = generate_responses(model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    assert batched == [_greedy_by_hand(model, tokenizer, p, 6) for p in prompts]
    assert tokenizer.padding_side == "right"  # restored
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_responses(model, tokenizer, prompts, max_new_tokens=64)


def test_generation_with_a_prompt_tuning_adapter(gpt2_dir):
    """A PEFT prompt-tuning model (virtual tokens prepended to the logits) generates and scores like its forward."""
    from peft import PromptTuningConfig, get_peft_model

    base, tokenizer = load_causal_lm(gpt2_dir)
    torch.manual_seed(0)
    model = get_peft_model(base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    model.eval()  # get_peft_model returns a model in training mode (dropout on)
    prompt = "question: what is two plus two? answer:"
    assert generate_responses(model, tokenizer, [prompt], max_new_tokens=5) == [
        _greedy_by_hand(model, tokenizer, prompt, 5)
    ]
    ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -len(ids) :]
    expected = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    assert token_logprobs(model, [ids]) == [pytest.approx(expected.tolist(), abs=1e-5)]


def test_truncate_at_stop():
    assert truncate_at_stop("four\n\nQuestion: next", ["\n\n"]) == "four"
    assert truncate_at_stop("a.b;c", [";", "."]) == "a"
    assert truncate_at_stop("no stop here", ["\n\n", ""]) == "no stop here"


# ------------------------------------------------------------------------------------------ text metrics


def test_rouge_and_bleu_golden_values():
    """"the cat sat on the mat" vs "the cat lay on the mat": 5 of 6 unigrams match (ROUGE-1 F = 5/6), 3 of 5
    bigrams (the cat, on the, the mat: ROUGE-2 = 3/5), LCS "the cat on the mat" = 5 (ROUGE-L = 5/6).
    BLEU: n-gram precisions 5/6, 3/5, 1/4 and 0/3, which exponential smoothing turns into 1/(2 × 3); the
    brevity penalty is 1, so BLEU = 100 × (5/6 × 3/5 × 1/4 × 1/6)^(1/4) = 100 × (1/48)^(1/4) = 37.99."""
    pred, ref = "the cat sat on the mat", "the cat lay on the mat"
    scores = rouge_scores([pred], [ref])
    assert scores["rouge1"] == [pytest.approx(5 / 6)]
    assert scores["rouge2"] == [pytest.approx(3 / 5)]
    assert scores["rougeL"] == [pytest.approx(5 / 6)]
    assert corpus_bleu([pred], [ref]) == pytest.approx(100 * (1 / 48) ** 0.25)
    metrics = generation_metrics([pred, "Hello World"], [ref, "hello world"], split="test")
    # ROUGE lowercases (the second pair scores 1); the mean is over examples.
    assert metrics["test_rouge1"] == pytest.approx((5 / 6 + 1) / 2)
    assert metrics["test_rougeL"] == pytest.approx((5 / 6 + 1) / 2)
    assert set(metrics) == {"test_rouge1", "test_rouge2", "test_rougeL", "test_bleu"}


def test_sample_table_is_seeded_and_worst_first():
    refs = [f"answer number {i}" for i in range(10)]
    gens = [refs[i] if i % 2 else "something else entirely" for i in range(10)]
    prompts = [f"prompt {i}" for i in range(10)]
    rows = sample_table(prompts, refs, gens, num_samples=6, seed=3)
    assert rows == sample_table(prompts, refs, gens, num_samples=6, seed=3)
    assert len(rows) == 6 and len({r["prompt"] for r in rows}) == 6
    assert [r["rougeL"] for r in rows] == sorted(r["rougeL"] for r in rows)
    assert all(r["rougeL"] == (1.0 if r["generated"] == r["reference"] else 0.0) for r in rows)
    assert len(sample_table(prompts, refs, gens, num_samples=50)) == 10


# ------------------------------------------------------------------------------------------ multiple choice


def test_multiple_choice_scorer_is_exact_and_ignores_the_prompt(char_tokenizer):
    """Prompt "Question: ab\\nAnswer:" and options " c" / " dd" under a bigram model: each option's score is
    log p(' ' | ':') + the option's own transitions (' '→c; ' '→d, d→d), computed from the table by hand.
    Changing the rows of tokens that only ever precede prompt tokens leaves every score unchanged; changing the
    row of ':' (the last prompt token, which predicts the option's first token) changes them."""
    tok = char_tokenizer
    torch.manual_seed(1)
    table = torch.randn(len(tok), len(tok))
    question = MultipleChoiceQuestion("q1", "ab", ("c", "dd"), ("1", "2"), answer=1)
    template = "Question: {stem}\nAnswer:"
    scores = score_multiple_choice(BigramLM(table), tok, [question], template, batch_size=2)[0]

    def by_hand(t, option):
        ids = tok("Answer:" + " " + option)["input_ids"]  # only the bigrams from ':' onwards matter
        return sum(bigram_logprob(t, ids)[len("Answer:") - 1 :])

    assert scores.loglikelihoods == pytest.approx((by_hand(table, "c"), by_hand(table, "dd")), abs=1e-5)
    assert scores.num_tokens == (2, 3) and scores.num_chars == (1, 2)

    prompt_only = table.clone()
    # Every prompt token but ' ' and ':', whose rows predict option tokens (' '→c, ':'→' ').
    for ch in sorted(set("Question: ab\nAnswer:") - {" ", ":"}):
        prompt_only[tok.convert_tokens_to_ids(ch)] += torch.randn(len(tok)) * 5
    again = score_multiple_choice(BigramLM(prompt_only), tok, [question], template)[0]
    assert again.loglikelihoods == pytest.approx(scores.loglikelihoods, abs=1e-5)
    colon = table.clone()
    colon[tok.convert_tokens_to_ids(":")] += torch.randn(len(tok)) * 5
    changed = score_multiple_choice(BigramLM(colon), tok, [question], template)[0]
    assert changed.loglikelihoods != pytest.approx(scores.loglikelihoods, abs=1e-3)


def test_multiple_choice_context_starts_like_the_tokenizer_starts_any_text(char_tokenizer):
    """A tokenizer that puts BOS before every text (Llama) gets BOS before the question, once; the option tokens
    are still the last ones of each sequence."""
    from tokenizers.processors import TemplateProcessing

    tok = char_tokenizer.__class__(tokenizer_object=char_tokenizer.backend_tokenizer.__class__.from_str(
        char_tokenizer.backend_tokenizer.to_str()), eos_token="<eos>", pad_token="<eos>", bos_token="<eos>")
    tok.backend_tokenizer.post_processor = TemplateProcessing(single="<eos> $A", special_tokens=[("<eos>", 0)])
    assert tok("ab")["input_ids"] == [0, 1, 2]
    seen = []

    class Recording(BigramLM):
        def forward(self, input_ids, attention_mask=None):
            seen.extend(row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask, strict=True))
            return super().forward(input_ids, attention_mask)

    question = MultipleChoiceQuestion("q", "ab", ("c", "dd"), ("A", "B"), 0)
    score_multiple_choice(Recording(torch.zeros(len(tok), len(tok))), tok, [question], "{stem}:")
    colon, space = tok.convert_tokens_to_ids([":", " "])
    assert sorted(seen) == sorted([[0, 1, 2, colon, space, 3], [0, 1, 2, colon, space, 4, 4]])  # BOS a b : ␣ option


def test_length_normalisation_can_flip_the_choice():
    """Option 0: -2.0 over 1 token / 1 char; option 1: -3.0 over 3 tokens / 6 chars. Raw: -2 > -3 picks 0;
    per token: -2 < -1 picks 1; per char: -2 < -0.5 picks 1."""
    score = ChoiceScore((-2.0, -3.0), (1, 3), (1, 6), answer=1)
    assert score.prediction("none") == 0
    assert score.prediction("token") == 1 and score.prediction("char") == 1
    tie = ChoiceScore((-1.0, -1.0), (1, 1), (1, 1), answer=1)
    assert tie.prediction() == 0  # ties go to the first option, as numpy's argmax
    metrics = multiple_choice_metrics([score, tie], "char", split="test")
    assert metrics == {"test_mc_accuracy": 0.0, "test_mc_accuracy_norm": 0.5}


def test_encode_pair_moves_the_space_and_splits_at_the_context(gpt2_dir):
    _, tokenizer = load_causal_lm(gpt2_dir)
    ctx, cont = encode_pair(tokenizer, "question: what is two plus two? answer: ", "four")
    assert tokenizer.decode(cont) == " four"
    assert ctx + cont == tokenizer("question: what is two plus two? answer: four")["input_ids"]
    ctx, cont = encode_pair(tokenizer, "", "four")
    assert ctx == [tokenizer.eos_token_id]


def test_mc_scores_on_a_real_model_match_its_forward(llama_dir):
    """Through a tiny Llama (whose tokenizer adds no BOS here) the option score equals summing the model's own
    log-softmax over the option tokens of ``prompt + option``."""
    model, tokenizer = load_causal_lm(llama_dir)
    question = MultipleChoiceQuestion("q", "what is two plus two?", ("four", "the lazy dog"), ("A", "B"), 0)
    scores = score_multiple_choice(model, tokenizer, [question])[0]
    for option, ll in zip(question.choices, scores.loglikelihoods, strict=True):
        ctx, cont = encode_pair(tokenizer, "Question: what is two plus two?\nAnswer:", " " + option)
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
        expected = sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))
        assert ll == pytest.approx(expected, abs=1e-4)


def test_example_tables_render_with_the_model_tokenizer(gpt2_dir):
    """Raw examples are rendered with the template (here the tokenizer's chat template); the reference is the bare
    answer, and perplexity text is prompt + completion, which ends at the EOS: the newline the chat template puts
    after the end-of-turn token is dropped so that TRL does not append a second EOS."""
    import pandas as pd

    from finetune.data.instructions import examples_frame

    _, tokenizer = load_causal_lm(gpt2_dir)
    frame = examples_frame([("e1", [{"role": "user", "content": "two plus two?"},
                                    {"role": "assistant", "content": "four"}])])
    prompts, references = prompts_and_references(frame, "chat", tokenizer)
    assert prompts == ["<|user|>\ntwo plus two?<|endoftext|>\n<|assistant|>\n"] and references == ["four"]
    assert evaluation_texts(frame, "chat", tokenizer) == [prompts[0] + "four<|endoftext|>"]
    assert evaluation_texts(pd.DataFrame({"text": ["a b", "c"]}), "chat", tokenizer) == ["a b", "c"]
    # A text table needs no template (causal_lm_training); prompt/response rows do, and say so.
    assert evaluation_texts(pd.DataFrame({"text": ["a b"]}), None, tokenizer) == ["a b"]
    with pytest.raises(ValueError, match="^template: prompt/response examples need the data's template to be "
                                         "rendered$"):
        evaluation_texts(frame, None, tokenizer)


# ------------------------------------------------------------------------------------------------ few-shot


def test_few_shot_prefixes_are_seeded():
    assert choose_shots(10, 3, seed=0) == choose_shots(10, 3, seed=0) != choose_shots(10, 3, seed=1)
    prompts, responses = [f"Q{i}: " for i in range(10)], [f"A{i}" for i in range(10)]
    shots = choose_shots(10, 2, seed=5)
    assert few_shot_prefix(prompts, responses, 2, seed=5) == "".join(f"Q{i}: A{i}\n\n" for i in shots)
    assert few_shot_prefix(prompts, responses, 0, seed=5) == ""
    with pytest.raises(ValueError, match="few_shot_k=11"):
        choose_shots(10, 11, seed=0)
    questions = [MultipleChoiceQuestion(str(i), f"s{i}", ("x", f"right{i}"), ("A", "B"), 1) for i in range(4)]
    prefix = few_shot_mc_prefix(questions, 2, seed=0, prompt_template="Q: {stem}\nA:")
    assert prefix == "".join(f"Q: s{i}\nA: right{i}\n\n" for i in choose_shots(4, 2, seed=0))


# ------------------------------------------------------------------------------------------------ ARC data


def _arc_line(stem="Which is a planet?", labels=("1", "2", "3"), key="2", **overrides):
    record = {"id": "x", "question": {"stem": stem, "choices": [
        {"text": t, "label": label} for t, label in zip(["a rock", "Mars", "the Sun"], labels, strict=False)]},
        "answerKey": key}
    record.update(overrides)
    return json.dumps(record)


def test_arc_loader_maps_the_answer_by_label(tmp_path):
    path = tmp_path / "arc.jsonl"
    path.write_text(_arc_line() + "\n\n" + _arc_line(labels=("C", "A", "B"), key="A") + "\n")
    questions = load_arc_jsonl(path)
    assert [q.answer for q in questions] == [1, 1]
    assert questions[0].labels == ("1", "2", "3") and questions[0].choices[1] == "Mars"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        (_arc_line(key="4"), "'answerKey' '4' is not one of the choice labels"),
        (_arc_line(stem=""), "'question.stem' must be a non-empty string"),
        (_arc_line(labels=("A", "A", "B"), key="A"), "duplicate choice labels"),
        (_arc_line(question={"stem": "q", "choices": [{"text": "only one", "label": "A"}]}), "at least 2 options"),
        (json.dumps({"answerKey": "A"}), "missing object 'question'"),
    ],
)
def test_arc_loader_names_the_bad_line(tmp_path, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text(_arc_line() + "\n" + line + "\n")
    with pytest.raises(DataFormatError, match=rf"^{path}:2: .*{reason[:20]}") as info:
        load_arc_jsonl(path)
    assert "\n" not in str(info.value) and reason in str(info.value)


def test_demo_arc_is_deterministic_and_loads(tmp_path):
    train, test = write_demo_arc(tmp_path / "a", num_questions=20, seed=4)
    again = write_demo_arc(tmp_path / "b", num_questions=20, seed=4)
    assert train.read_bytes() == again[0].read_bytes() and test.read_bytes() == again[1].read_bytes()
    questions = load_arc_jsonl(train) + load_arc_jsonl(test)
    assert len(questions) == 20 and any(q.labels[0] == "1" for q in questions)
    for q in questions:  # the keyed option is the arithmetic answer
        a, op, b = q.stem.removeprefix("What is ").removesuffix("?").split()
        assert int(q.choices[q.answer]) == {"plus": int(a) + int(b), "minus": int(a) - int(b),
                                            "times": int(a) * int(b)}[op]


@pytest.mark.parametrize("which", ["gpt2", "gqa_llama"])
def test_generation_with_a_prefix_tuning_adapter(which, gpt2_dir, tmp_path):
    """A prefix-tuning model generates like its own forward (PEFT 0.21's ``generate`` under transformers 5.25
    dropped the prefix and returned the base model's text), also with grouped-query attention (SmolLM2: 9 query
    heads, 3 key/value heads), in a left-padded batch."""
    from peft import PrefixTuningConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    if which == "gpt2":
        base, tokenizer = load_causal_lm(gpt2_dir)
    else:
        _, tokenizer = load_causal_lm(gpt2_dir)
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        LlamaForCausalLM(config).save_pretrained(tmp_path)
        tokenizer.save_pretrained(tmp_path)
        base, tokenizer = load_causal_lm(tmp_path)
    torch.manual_seed(0)
    model = get_peft_model(base, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    with torch.no_grad():
        for param in model.prompt_encoder.parameters():
            param.mul_(20.0)  # a prefix large enough to change the greedy continuation
    model.eval()
    prompts = ["question: what is two plus two? answer:", "the quick"]
    generated = generate_responses(model, tokenizer, prompts, max_new_tokens=5, batch_size=2)
    assert generated == [_greedy_by_hand(model, tokenizer, p, 5) for p in prompts]
    with model.disable_adapter():
        assert generated != [_greedy_by_hand(model, tokenizer, p, 5) for p in prompts]
