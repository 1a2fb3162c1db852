"""Generation pipelines: supervised fine-tuning, continued pre-training, a comparison of fine-tuning methods,
language-model distillation, DPO, RLHF (reward model + RL) and retrieval-augmented intent generation."""

from zenml import Model, pipeline
from zenml.enums import ExecutionMode

from finetune.params import (
    CausalLmParams,
    DpoParams,
    GenerationEvalParams,
    InstructionDataParams,
    LmDistillationParams,
    MethodComparisonParams,
    MultipleChoiceDataParams,
    PreferenceDataParams,
    PromotionParams,
    RagDataParams,
    RagParams,
    RegisteredModel,
    RewardEvalParams,
    RlhfParams,
    SftParams,
    TextDataParams,
)
from finetune.promotion import UNTUNED, parent_specs
from pipelines.ranking import role_fingerprints
from steps.data.fingerprint_instructions import fingerprint_instructions
from steps.data.fingerprint_multiple_choice import fingerprint_multiple_choice
from steps.data.fingerprint_preferences import fingerprint_preferences
from steps.data.fingerprint_rag_sources import fingerprint_rag_sources
from steps.data.fingerprint_text_corpus import fingerprint_text_corpus
from steps.data.load_instructions import load_instructions
from steps.data.load_multiple_choice import load_multiple_choice
from steps.data.load_preferences import load_preferences
from steps.data.load_rag_queries import load_rag_queries
from steps.data.load_text_corpus import load_text_corpus
from steps.data.retrieve_passages import retrieve_passages
from steps.data.tokenize_instructions import tokenize_instructions
from steps.data.tokenize_text import tokenize_text
from steps.evaluate.build_causal_lm_report import build_causal_lm_report
from steps.evaluate.build_distillation_report import build_distillation_report
from steps.evaluate.build_dpo_report import build_dpo_report
from steps.evaluate.build_generation_report import build_generation_report
from steps.evaluate.build_method_comparison_report import build_method_comparison_report
from steps.evaluate.build_rag_report import build_rag_report
from steps.evaluate.build_rlhf_report import build_rlhf_report
from steps.evaluate.collect_method_result import collect_method_result
from steps.evaluate.compare_distilled_models import compare_distilled_models
from steps.evaluate.evaluate_generations import evaluate_generations
from steps.evaluate.evaluate_multiple_choice import evaluate_multiple_choice
from steps.evaluate.evaluate_perplexity import evaluate_perplexity
from steps.evaluate.evaluate_policy_reward import evaluate_policy_reward
from steps.evaluate.evaluate_preference_pairs import evaluate_preference_pairs
from steps.evaluate.few_shot_baseline import few_shot_baseline
from steps.evaluate.generate_intents import generate_intents
from steps.registry.hooks import discard_model_version_on_failure
from steps.registry.promote_model import promote_model
from steps.registry.select_best_method import select_best_method
from steps.train.distill_causal_lm_model import distill_causal_lm_model
from steps.train.prepare_causal_lm import prepare_causal_lm
from steps.train.prepare_retriever import prepare_retriever
from steps.train.train_causal_lm_model import train_causal_lm_model
from steps.train.train_dpo_model import train_dpo_model
from steps.train.train_intent_generator import train_intent_generator
from steps.train.train_reward_model import train_reward_model
from steps.train.train_rl_policy import train_rl_policy
from steps.train.train_sft_model import train_sft_model


def generation_gate(metrics, fingerprints, promotion: PromotionParams, primary_metric: str, parents: dict,
                    baseline_metric: str | None = None, other_metrics: list | None = None, per_item=None,
                    baseline_per_item=None):
    """``promote_model`` for a generation candidate; ``parents`` are model specs by role (None: no such model);
    ``per_item`` the primary metric's value per evaluation item, where the evaluator measures one, and
    ``baseline_per_item`` the baseline's on the same items (the gate's paired test against the baseline).

    ``promotion.require_significance`` needs that test, so it is refused before anything runs where the pipeline
    has no baseline or no per-item values of both.
    """
    if promotion.require_significance and baseline_metric is None:
        raise ValueError(f"promotion.require_significance: this pipeline has no baseline for {primary_metric} to be "
                         "tested against; leave it false")
    if promotion.require_significance and (per_item is None or baseline_per_item is None):
        raise ValueError(f"promotion.require_significance: this pipeline has no per-item values of {primary_metric} "
                         f"and {baseline_metric} to pair, so no paired test against the baseline; leave it false")
    decision, _ = promote_model(
        metrics, fingerprints, promotion, primary_metric, other_metrics or [], baseline_metric=baseline_metric,
        per_item=per_item, baseline_per_item=baseline_per_item, parents=parent_specs(parents))
    return decision


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def sft_training(
    data: InstructionDataParams,
    sft: SftParams,
    evaluation: GenerationEvalParams = GenerationEvalParams(),
    mc_data: MultipleChoiceDataParams | None = None,
    promotion: PromotionParams = PromotionParams(),
    primary_metric: str = "test_rougeL",
) -> None:
    """SFT: prompt/response data → base model → tokenized splits (cached on data, tokenizer and max_length) →
    SFTTrainer with the configured method → perplexity, ROUGE/BLEU,
    multiple choice and a few-shot baseline of the untrained model → promotion gate → HTML report."""
    sft_steps(fingerprint_instructions(data), data, sft, evaluation, mc_data, promotion, primary_metric)


def sft_steps(fingerprints, data: InstructionDataParams, sft: SftParams, evaluation: GenerationEvalParams,
              mc_data: MultipleChoiceDataParams | None, promotion: PromotionParams, primary_metric: str,
              train=train_sft_model, variant: str = ""):
    """Everything in ``sft_training`` after the fingerprints (``sft_training_multi_gpu`` reuses it).

    ``train(base_model_dir, tokenized_train, tokenized_validation, sft) -> (model_dir, training_log, training_stats)``
    is the training step; the multi-GPU variant (pipelines/multi_gpu.py) passes its staged ``run_with_accelerate``
    step and names itself in the report title (``variant``).
    """
    train_set, validation, test = load_instructions(data, fingerprints)
    base_model_dir = prepare_causal_lm(sft.model, train_set, quantize_4bit=sft.method.name == "qlora",
                                       model_fingerprints=role_fingerprints("base_model", sft.model))
    tokenized_train, tokenized_validation = tokenize_instructions(base_model_dir, train_set, validation,
                                                                  sft.tokenization(data.template))
    model_dir, training_log, _ = train(base_model_dir, tokenized_train, tokenized_validation, sft)
    perplexity, _ = evaluate_perplexity(model_dir, test, evaluation, template=data.template)
    metrics, samples, per_example = evaluate_generations(model_dir, test, evaluation, template=data.template)
    mc_train = mc_test = mc_metrics = None
    if mc_data is not None:
        mc_train, mc_test = load_multiple_choice(mc_data, fingerprint_multiple_choice(mc_data))
        mc_metrics = evaluate_multiple_choice(model_dir, mc_test, evaluation)
    few_shot, few_shot_samples, few_shot_per_example = few_shot_baseline(base_model_dir, train_set, test, evaluation,
                                                                         data.template, mc_train, mc_test)
    paired = primary_metric == "test_rougeL"  # the metric the evaluators measure per example
    decision = generation_gate(metrics, fingerprints, promotion, primary_metric, {"base_model": sft.model},
                               baseline_metric=f"few_shot_{primary_metric}", other_metrics=[few_shot, perplexity],
                               per_item=per_example if paired else None,
                               baseline_per_item=few_shot_per_example if paired else None)
    build_generation_report(metrics, samples, evaluation, perplexity, mc_metrics, few_shot, few_shot_samples,
                            training_log, title=f"SFT ({sft.method.name}{variant})", promotion_decision=decision)


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def causal_lm_training(
    data: TextDataParams,
    causal_lm: CausalLmParams,
    evaluation: GenerationEvalParams = GenerationEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """Continued pre-training: text corpus split by document → base model → packed blocks (cached on data,
    tokenizer and block size) → Trainer → held-out perplexity of the base and the trained model → promotion gate
    (lower is better) → HTML report."""
    fingerprints = fingerprint_text_corpus(data)
    train, validation, test = load_text_corpus(data, fingerprints)
    base_model_dir = prepare_causal_lm(causal_lm.model, train, quantize_4bit=causal_lm.method.name == "qlora",
                                       model_fingerprints=role_fingerprints("base_model", causal_lm.model))
    before, per_window_before = evaluate_perplexity(base_model_dir, test, evaluation, split="base_test",
                                                    id="evaluate_base_perplexity")
    tokenized_train, tokenized_validation = tokenize_text(base_model_dir, train, validation, causal_lm.tokenization())
    model_dir, training_log, training_stats = train_causal_lm_model(base_model_dir, tokenized_train,
                                                                    tokenized_validation, causal_lm)
    after, per_window = evaluate_perplexity(model_dir, test, evaluation)
    decision = generation_gate(after, fingerprints, promotion, "test_perplexity", {"base_model": causal_lm.model},
                               baseline_metric="base_test_perplexity", other_metrics=[before, training_stats],
                               per_item=per_window, baseline_per_item=per_window_before)
    build_causal_lm_report(before, after, training_stats, training_log, promotion_decision=decision)


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def method_comparison(
    data: InstructionDataParams,
    comparison: MethodComparisonParams,
    evaluation: GenerationEvalParams = GenerationEvalParams(),
    mc_data: MultipleChoiceDataParams | None = None,
    promotion: PromotionParams = PromotionParams(),
    primary_metric: str = "test_rougeL",
) -> None:
    """Every configured method fine-tunes the same base model on the same data and budget; each is evaluated the
    same way, and one table and chart compare trainable parameters, memory, time, tokens/s, loss and metrics.
    The untuned base model is evaluated the same way first: it is the table's first row, every method's paired
    comparison (per test prompt / per scored window) is against it, and the gate requires the best method to beat
    it. The examples are tokenized once for all methods."""
    fingerprints = fingerprint_instructions(data)
    train, validation, test = load_instructions(data, fingerprints)
    quantize = any(m.name == "qlora" for m in comparison.methods)
    base_model_dir = prepare_causal_lm(comparison.model, train, quantize_4bit=quantize,
                                       model_fingerprints=role_fingerprints("base_model", comparison.model))
    tokenized_train, tokenized_validation = tokenize_instructions(base_model_dir, train, validation,
                                                                  comparison.tokenization(data.template))
    mc_test = None
    if mc_data is not None:
        _, mc_test = load_multiple_choice(mc_data, fingerprint_multiple_choice(mc_data))

    def evaluate(model_dir, name):
        perplexity, per_window = evaluate_perplexity(model_dir, test, evaluation, template=data.template,
                                                     id=f"perplexity_{name}")
        metrics, _, per_example = evaluate_generations(model_dir, test, evaluation, template=data.template,
                                                       id=f"generate_{name}")
        mc_metrics = None if mc_test is None else evaluate_multiple_choice(model_dir, mc_test, evaluation,
                                                                           id=f"multiple_choice_{name}")
        return perplexity, per_window, metrics, per_example, mc_metrics

    untuned_perplexity, untuned_windows, untuned_metrics, untuned_examples, untuned_mc = evaluate(base_model_dir,
                                                                                                  UNTUNED)
    results, per_item = collect_method_result(UNTUNED, {"trainable_parameters": 0, "train_seconds": 0.0},
                                              untuned_perplexity, untuned_metrics, untuned_mc,
                                              per_item_rougeL=untuned_examples, id="collect_untuned")
    for method in comparison.methods:
        name = method.name
        model_dir, _, stats = train_sft_model(base_model_dir, tokenized_train, tokenized_validation,
                                              comparison.sft_params(method), id=f"train_{name}")
        perplexity, per_window, metrics, per_example, mc_metrics = evaluate(model_dir, name)
        results, per_item = collect_method_result(
            name, stats, perplexity, metrics, mc_metrics, results, per_item_rougeL=per_example,
            per_item_perplexity=per_window, baseline_per_item_rougeL=untuned_examples,
            baseline_per_item_perplexity=untuned_windows, previous_per_item=per_item, id=f"collect_{name}")
    best_metrics, best, best_per_item = select_best_method(results, primary_metric, per_item)
    paired = primary_metric == "test_rougeL"  # the metric the evaluators measure per example
    decision = generation_gate(best_metrics, fingerprints, promotion, primary_metric,
                               {"base_model": comparison.model},
                               baseline_metric=f"untuned_{primary_metric}" if primary_metric.startswith("test_")
                               else None,
                               per_item=best_per_item if paired else None,
                               baseline_per_item=untuned_examples if paired else None)
    build_method_comparison_report(results, promotion_decision=decision, method_per_item=per_item, best_method=best)


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def lm_distillation(
    data: TextDataParams,
    distillation: LmDistillationParams,
    evaluation: GenerationEvalParams = GenerationEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """Causal-LM distillation: text corpus → teacher (trained on the corpus first when ``teacher_training`` is set)
    → student trained with α·τ²·KL + (1−α)·CE and the same student with α = 0 → held-out perplexity, size and
    tokens/s of all three → promotion gate → HTML report.

    The corpus is packed into blocks once with the teacher's tokenizer (teacher training and a student started from
    the teacher read those), and once with a separate student's own tokenizer (the same token → id map, checked
    when training, but its positions may cap the blocks differently)."""
    fingerprints = fingerprint_text_corpus(data)
    train, validation, test = load_text_corpus(data, fingerprints)
    teacher_dir = prepare_causal_lm(distillation.teacher, train, id="prepare_teacher",
                                    model_fingerprints=role_fingerprints("teacher", distillation.teacher))
    teacher_tokens = None
    if distillation.teacher_training is not None or distillation.student == "teacher":
        teacher_tokens = tokenize_text(teacher_dir, train, validation, distillation.tokenization(),
                                       id="tokenize_teacher_text")
    if distillation.teacher_training is not None:
        teacher_dir, _, _ = train_causal_lm_model(teacher_dir, *teacher_tokens, distillation.teacher_params(),
                                                  id="train_teacher")
    if distillation.student == "teacher":       # a shallower copy of the teacher (layers dropped when training)
        student_base_dir, student_tokens = teacher_dir, teacher_tokens
    else:
        student_base_dir = prepare_causal_lm(distillation.student, train, id="prepare_student",
                                             model_fingerprints=role_fingerprints("student_base",
                                                                                  distillation.student))
        student_tokens = tokenize_text(student_base_dir, train, validation, distillation.tokenization(),
                                       id="tokenize_student_text")
    model_dir, training_log, training_stats = distill_causal_lm_model(teacher_dir, student_base_dir, *student_tokens,
                                                                      distillation)
    baseline_dir, baseline_log, baseline_stats = distill_causal_lm_model(
        teacher_dir, student_base_dir, *student_tokens, distillation.without_teacher(),
        id="train_student_without_teacher")
    comparison, metrics = compare_distilled_models(teacher_dir, model_dir, baseline_dir, test, evaluation,
                                                   block_size=distillation.block_size)
    decision = generation_gate(metrics, fingerprints, promotion, "test_perplexity",
                               {"teacher": distillation.teacher, "student_base": distillation.student},
                               baseline_metric="no_kd_test_perplexity", other_metrics=[training_stats])
    build_distillation_report(comparison, training_stats, baseline_stats, training_log, baseline_log,
                              promotion_decision=decision)


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def rlhf_training(
    data: PreferenceDataParams,
    rlhf: RlhfParams,
    evaluation: RewardEvalParams = RewardEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """RLHF: preference pairs → reward model (TRL RewardTrainer, held-out pairwise accuracy) → the policy's mean
    reward on held-out prompts → RLOO/GRPO against the reward model → mean reward again → promotion gate
    → HTML report."""
    fingerprints = fingerprint_preferences(data)
    train, test, texts = load_preferences(data, fingerprints)
    base_model_dir = prepare_causal_lm(rlhf.model, texts,
                                       model_fingerprints=role_fingerprints("base_model", rlhf.model))
    reward_base = {} if rlhf.reward.model is None else {
        "model_fingerprints": role_fingerprints("reward_base", rlhf.reward.model)}
    reward_model_dir, reward_model_metrics, reward_log = train_reward_model(base_model_dir, train, test, rlhf.reward,
                                                                            **reward_base)
    before, per_prompt_before = evaluate_policy_reward(base_model_dir, reward_model_dir, test, evaluation,
                                                       split="base_test", id="evaluate_base_reward")
    model_dir, training_log = train_rl_policy(base_model_dir, reward_model_dir, train, rlhf)
    after, per_prompt = evaluate_policy_reward(model_dir, reward_model_dir, test, evaluation)
    parents = {"base_model": rlhf.model, **({} if rlhf.reward.model is None else {"reward_base": rlhf.reward.model})}
    decision = generation_gate(after, fingerprints, promotion, "test_mean_reward", parents,
                               baseline_metric="base_test_mean_reward", other_metrics=[before, reward_model_metrics],
                               per_item=per_prompt, baseline_per_item=per_prompt_before)
    build_rlhf_report(reward_model_metrics, before, after, reward_log, training_log, promotion_decision=decision,
                      reward_model_dir=reward_model_dir)


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def rag_intent(data: RagDataParams, rag: RagParams, promotion: PromotionParams = PromotionParams()) -> None:
    """RAG intent generation: corpus + queries → top-k passages (BM25, or a dual encoder given as a spec or a
    registered version) → prompt with the query and its passages → intent from a causal LM fine-tuned on the train
    queries, or from an OpenAI-compatible endpoint (key from a ZenML secret) → retrieval recall and ROUGE (a local
    generator also before fine-tuning, the gate's baseline with a per-query paired test) → HTML report."""
    fingerprints = fingerprint_rag_sources(data)
    corpus, train_queries, test_queries = load_rag_queries(data, fingerprints)
    retriever, retriever_dir, retriever_fingerprints = rag.retriever, None, None
    if retriever.kind == "dual_encoder":
        retriever_fingerprints = role_fingerprints("retriever", retriever.model)
        if isinstance(retriever.model, RegisteredModel):
            retriever_dir = Model(name=retriever.model.name, version=retriever.model.version).get_model_artifact(
                "model_dir")
        else:
            retriever_dir = prepare_retriever(retriever, corpus, train_queries, retriever_fingerprints)
    train, test, retrieval_metrics = retrieve_passages(corpus, train_queries, test_queries, rag, retriever_dir,
                                                       retriever_fingerprints)
    model_dir = untuned = untuned_per_example = None
    if rag.generator.kind == "local":
        generator = rag.generator.sft.model
        base_model_dir = prepare_causal_lm(generator, train,
                                           model_fingerprints=role_fingerprints("generator_base", generator))
        model_dir, _ = train_intent_generator(base_model_dir, train, rag.generator)
        # the baseline: the same generator before fine-tuning, on the same prompts
        untuned, _, untuned_per_example = generate_intents(test, retrieval_metrics, rag, base_model_dir,
                                                           prefix="untuned_", id="generate_intents_untuned")
    metrics, samples, per_example = generate_intents(test, retrieval_metrics, rag, model_dir)
    generator_base = rag.generator.sft.model if rag.generator.kind == "local" else None
    decision = generation_gate(metrics, fingerprints, promotion, "test_rougeL",
                               {"retriever": retriever.model, "generator_base": generator_base},
                               baseline_metric=None if untuned is None else "untuned_test_rougeL",
                               other_metrics=None if untuned is None else [untuned], per_item=per_example,
                               baseline_per_item=untuned_per_example)
    build_rag_report(metrics, samples, promotion_decision=decision, baseline_metrics=untuned)


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def dpo_alignment(
    data: PreferenceDataParams,
    dpo: DpoParams,
    evaluation: GenerationEvalParams = GenerationEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """DPO: preference pairs (JSONL or HH-RLHF transcripts) → starting model → TRL DPOTrainer (full or LoRA; the
    reference explicit, the adapter-disabled base, or precomputed) → held-out preference accuracy and reward
    margins → promotion gate (per-pair paired test) → HTML report with preference agreement over training."""
    fingerprints = fingerprint_preferences(data)
    train, test, texts = load_preferences(data, fingerprints)
    base_model_dir = prepare_causal_lm(dpo.model, texts, quantize_4bit=dpo.method.name == "qlora",
                                       model_fingerprints=role_fingerprints("base_model", dpo.model))
    reference_dir = base_model_dir
    if dpo.reference_model is not None:
        reference_dir = prepare_causal_lm(dpo.reference_model, texts, id="prepare_reference",
                                          model_fingerprints=role_fingerprints("reference_model", dpo.reference_model))
        model_dir, training_log, training_stats = train_dpo_model(base_model_dir, train, test, dpo,
                                                                  reference_dir=reference_dir)
    else:
        model_dir, training_log, training_stats = train_dpo_model(base_model_dir, train, test, dpo)
    metrics, per_pair = evaluate_preference_pairs(model_dir, reference_dir, test, evaluation, beta=dpo.beta)
    decision = generation_gate(metrics, fingerprints, promotion, "test_preference_accuracy",
                               {"base_model": dpo.model, "reference_model": dpo.reference_model},
                               other_metrics=[training_stats], per_item=per_pair)
    build_dpo_report(metrics, training_stats, training_log, promotion_decision=decision)
