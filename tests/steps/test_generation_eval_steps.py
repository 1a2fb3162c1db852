"""Generation evaluation steps through ``.entrypoint()`` on a tiny GPT-2 and the embedded demo data."""

import uuid

import pandas as pd
import pytest
import torch

from finetune.data.arc import write_demo_arc
from finetune.data.instructions import examples_frame
from finetune.data.types import DataFormatError
from finetune.models.causal import build_tiny_causal_lm, load_causal_lm
from finetune.models.directory import ModelDirectory
from finetune.params import GenerationEvalParams, MultipleChoiceDataParams, TinyGpt2Model
from finetune.promotion import item_key
from steps.data.fingerprint_multiple_choice import fingerprint_multiple_choice
from steps.data.load_multiple_choice import load_multiple_choice
from steps.evaluate.build_generation_report import build_generation_report
from steps.evaluate.evaluate_generations import evaluate_generations
from steps.evaluate.evaluate_multiple_choice import evaluate_multiple_choice
from steps.evaluate.evaluate_perplexity import evaluate_perplexity
from steps.evaluate.few_shot_baseline import few_shot_baseline

TEMPLATE = "Q: {prompt}\nA: "


def _examples(n: int, offset: int = 0) -> pd.DataFrame:
    return examples_frame(
        (f"ex-{i}", [{"role": "user", "content": f"what is {i % 7} plus {i % 5}?"},
                     {"role": "assistant", "content": f"{i % 7 + i % 5}"}])
        for i in range(offset, offset + n)
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> ModelDirectory:
    texts = [f"Q: what is {a} plus {b}?\nA: {a + b}" for a in range(7) for b in range(5)]
    path = build_tiny_causal_lm(TinyGpt2Model(max_position_embeddings=128), tmp_path_factory.mktemp("m"), texts)
    return ModelDirectory(path=path, kind="causal_lm", base_model="tiny_gpt2")


@pytest.fixture
def evaluation() -> GenerationEvalParams:
    return GenerationEvalParams(max_new_tokens=4, batch_size=4, num_samples=5, few_shot_k=2, device="cpu")


def test_multiple_choice_data_steps(tmp_path):
    params = MultipleChoiceDataParams.model_validate({"source": {"kind": "demo", "output_dir": str(tmp_path),
                                                                 "num_questions": 12}})
    fingerprints = fingerprint_multiple_choice.entrypoint(params)
    assert set(fingerprints) == {str(tmp_path / "train.jsonl"), str(tmp_path / "test.jsonl")}
    train, test = load_multiple_choice.entrypoint(params, fingerprints)
    assert len(train) == len(test) == 6 and test[0]["question"]["choices"] and test[0]["answerKey"]

    train_path, test_path = write_demo_arc(tmp_path / "files", 8)
    test_path.write_text(test_path.read_text() + '{"question": {"stem": "x"}, "answerKey": "A"}\n')
    files = MultipleChoiceDataParams.model_validate({"source": {"kind": "arc_files", "test": str(test_path)}})
    with pytest.raises(DataFormatError, match=rf"^{test_path}:5: 'question.choices'"):
        load_multiple_choice.entrypoint(files, {})


def test_perplexity_step_is_exact_on_a_uniform_model(model_dir, evaluation, tmp_path):
    """With a zero LM head every token has probability 1/V, so test_perplexity is V and test_nll is ln V."""
    model, tokenizer = load_causal_lm(model_dir.path)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    uniform = tmp_path / "uniform"
    model.save_pretrained(uniform)
    tokenizer.save_pretrained(uniform)
    texts = pd.DataFrame({"text": ["what is one plus two", "three plus four is seven"]})
    metrics, per_window = evaluate_perplexity.entrypoint(ModelDirectory(uniform, "causal_lm"), texts, evaluation)
    assert metrics["test_perplexity"] == pytest.approx(model.config.vocab_size, rel=1e-5)
    assert metrics["test_nll"] == pytest.approx(torch.log(torch.tensor(float(model.config.vocab_size))).item(),
                                                rel=1e-5)
    # Every window is uniform too: each one's perplexity is V.
    assert per_window and all(v == pytest.approx(model.config.vocab_size, rel=1e-5) for v in per_window.values())
    # Rendered instruction examples are scored as prompt + completion.
    rendered, _ = evaluate_perplexity.entrypoint(ModelDirectory(uniform, "causal_lm"), _examples(3), evaluation,
                                              TEMPLATE, split="validation")
    assert rendered["validation_perplexity"] == pytest.approx(model.config.vocab_size, rel=1e-5)


def test_generation_step_metrics_match_its_sample_table(model_dir, evaluation):
    """With num_samples >= examples the sample table holds every example, so the mean of its ROUGE-L column is
    test_rougeL; prompts are rendered with the template; the per-item ROUGE-L (for the promotion gate) is keyed by
    the rendered prompt and equals the table's value of that prompt."""
    metrics, samples, per_item = evaluate_generations.entrypoint(model_dir, _examples(5), evaluation, TEMPLATE)
    assert set(metrics) == {"test_rouge1", "test_rouge2", "test_rougeL", "test_bleu"}
    assert len(samples) == 5 and samples["prompt"].str.startswith("Q: what is").all()
    assert metrics["test_rougeL"] == pytest.approx(samples["rougeL"].mean())
    assert list(samples["rougeL"]) == sorted(samples["rougeL"])
    assert per_item == {item_key(row.prompt): row.rougeL for row in samples.itertuples()}


def test_multiple_choice_and_few_shot_steps(model_dir, evaluation, tmp_path):
    train_path, test_path = write_demo_arc(tmp_path, 16)
    params = MultipleChoiceDataParams.model_validate({"source": {"kind": "arc_files", "train": str(train_path),
                                                                 "test": str(test_path)}})
    mc_train, mc_test = load_multiple_choice.entrypoint(params, {})
    mc = evaluate_multiple_choice.entrypoint(model_dir, mc_test, evaluation, split="dev")
    assert set(mc) == {"dev_mc_accuracy", "dev_mc_accuracy_norm"}
    assert all(v * 8 == round(v * 8) for v in mc.values())  # a fraction of the 8 test questions

    few, few_samples, few_per_item = few_shot_baseline.entrypoint(model_dir, _examples(10), _examples(4, offset=10),
                                                                  evaluation, TEMPLATE, mc_train, mc_test)
    assert set(few) == {"few_shot_test_rouge1", "few_shot_test_rouge2", "few_shot_test_rougeL", "few_shot_test_bleu",
                        "few_shot_test_mc_accuracy", "few_shot_test_mc_accuracy_norm"}
    assert len(few_samples) == 4 and not few_samples["generated"].str.contains("\n\n").any()  # cut at separator
    # Shown as the test prompts alone, without the few-shot examples before them.
    assert set(few_samples["prompt"]) == {TEMPLATE.format(prompt=p) for p in _examples(4, offset=10)["prompt"]}
    # Per-item ROUGE-L keyed like the fine-tuned model's, so the gate pairs them (4 examples ≤ num_samples: all shown).
    assert few_per_item == {item_key(row.prompt): row.rougeL for row in few_samples.itertuples()}

    metrics, samples, per_item = evaluate_generations.entrypoint(model_dir, _examples(4, offset=10), evaluation,
                                                                 TEMPLATE)
    assert set(per_item) == set(few_per_item)
    html = build_generation_report.entrypoint(
        metrics, samples, evaluation, {"test_perplexity": 12.5},
        {"test_mc_accuracy": 0.5, "test_mc_accuracy_norm": 0.25},
        {**few, "few_shot_test_mc_accuracy": 0.25, "few_shot_test_mc_accuracy_norm": 0.25}, few_samples,
        [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "eval_loss": 1.7}], {"method": "lora <r=8>"},
    )
    assert "test_perplexity" in html and "12.5000" in html and "2-shot" in html
    assert "<td>test_mc_accuracy</td><td class=\"num\">0.5000</td><td class=\"num\">0.2500</td>" \
           "<td class=\"num\">0.2500</td>" in html  # fine-tuned, few-shot, Δ
    assert html.count("data:image/png;base64,") == 2  # comparison chart and loss curve
    assert "lora &lt;r=8&gt;" in html and "Few-shot baseline generations" in html


@pytest.mark.slow
def test_evaluation_artifacts_round_trip_through_the_store(model_dir, tmp_path, zenml_client):
    """The evaluation steps chained in a pipeline on the throw-away store: every output materializes and loads
    back (ARC records as JSON lists, sample tables as DataFrames, the report as HTML), and a rerun on unchanged
    question files is cached past the fingerprint."""
    from zenml import pipeline, save_artifact
    from zenml.integrations.registry import integration_registry

    # Pipelines activate ZenML's integrations (the pandas materializer) when they compile; the inputs saved here
    # before any compile need them too, or DataFrames would be pickled.
    integration_registry.activate_integrations()
    tag = uuid.uuid4().hex[:8]
    model = save_artifact(model_dir, f"eval_model_{tag}")
    train = save_artifact(_examples(10), f"eval_train_{tag}")
    test = save_artifact(_examples(4, offset=10), f"eval_test_{tag}")
    mc_params = MultipleChoiceDataParams.model_validate({"source": {"kind": "demo", "output_dir": str(tmp_path),
                                                                    "num_questions": 8}})
    evaluation = GenerationEvalParams(max_new_tokens=3, batch_size=4, num_samples=3, few_shot_k=1, device="cpu")

    @pipeline(enable_cache=True)
    def generation_evaluation_check():
        mc_train, mc_test = load_multiple_choice(mc_params, fingerprint_multiple_choice(mc_params))
        mc = evaluate_multiple_choice(model, mc_test, evaluation)
        metrics, samples, _ = evaluate_generations(model, test, evaluation, TEMPLATE)
        ppl, _ = evaluate_perplexity(model, test, evaluation, TEMPLATE)
        few, few_samples, _ = few_shot_baseline(model, train, test, evaluation, TEMPLATE, mc_train, mc_test)
        build_generation_report(metrics, samples, evaluation, ppl, mc, few, few_samples)

    first = zenml_client.get_pipeline_run(generation_evaluation_check().id)
    assert str(first.status) == "completed"
    mc_test = first.steps["load_multiple_choice"].outputs["mc_test"][0].load()
    assert len(mc_test) == 4 and mc_test[0]["question"]["choices"][0]["label"] in {"A", "1"}
    samples = first.steps["evaluate_generations"].outputs["sample_generations"][0].load()
    assert list(samples.columns) == ["prompt", "reference", "generated", "rougeL"] and len(samples) == 3
    few = first.steps["few_shot_baseline"].outputs["few_shot_metrics"][0].load()
    assert "few_shot_test_mc_accuracy_norm" in few
    report = first.steps["build_generation_report"].outputs["report"][0].load()
    assert "<td>test_mc_accuracy_norm</td>" in report and "1-shot" in report

    second = zenml_client.get_pipeline_run(generation_evaluation_check().id)
    statuses = {name: str(s.status) for name, s in second.steps.items()}
    assert statuses.pop("fingerprint_multiple_choice") == "completed"
    assert set(statuses.values()) == {"cached"}
