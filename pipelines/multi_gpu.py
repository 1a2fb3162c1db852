"""Multi-GPU variants: the same pipelines with the training step run on every GPU of its node by accelerate.

``cross_encoder_training_multi_gpu`` and ``sft_training_multi_gpu`` are ``cross_encoder_training`` and
``sft_training`` step for step, except that the training step is replaced by its ``run_with_accelerate`` variant
and a staging step in front of it (accelerate passes a step's inputs on a command line, so tables and models
travel as files). tests/pipelines/test_multi_gpu.py checks that the step lists stay those of the originals.
The number of processes is the number of GPUs the training step sees: ``ResourceSettings.gpu_count`` on a
remote stack (configs/gpu/*_multi_gpu.yaml).
"""

from zenml import pipeline
from zenml.enums import ExecutionMode

from finetune.params import (
    CrossEncoderParams,
    GenerationEvalParams,
    InstructionDataParams,
    MiningParams,
    MultiGpuSftParams,
    MultipleChoiceDataParams,
    PromotionParams,
    RankingDataParams,
    RankingEvalParams,
    RetrievalParams,
)
from pipelines.generation import generation_gate
from pipelines.ranking import cross_encoder_steps, role_fingerprints
from steps.data.fingerprint_instructions import fingerprint_instructions
from steps.data.fingerprint_multiple_choice import fingerprint_multiple_choice
from steps.data.fingerprint_sources import fingerprint_sources
from steps.data.load_instructions import load_instructions
from steps.data.load_multiple_choice import load_multiple_choice
from steps.evaluate.build_generation_report import build_generation_report
from steps.evaluate.evaluate_generations import evaluate_generations
from steps.evaluate.evaluate_multiple_choice import evaluate_multiple_choice
from steps.evaluate.evaluate_perplexity import evaluate_perplexity
from steps.evaluate.few_shot_baseline import few_shot_baseline
from steps.registry.hooks import discard_model_version_on_failure
from steps.train.prepare_causal_lm import prepare_causal_lm
from steps.train.stage_sft_inputs import stage_sft_inputs
from steps.train.stage_train_pairs import stage_train_pairs
from steps.train.train_cross_encoder_multi_gpu import train_cross_encoder_multi_gpu
from steps.train.train_sft_model_multi_gpu import train_sft_model_multi_gpu


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def cross_encoder_training_multi_gpu(
    data: RankingDataParams,
    retrieval: RetrievalParams = RetrievalParams(),
    mining: MiningParams = MiningParams(),
    cross_encoder: CrossEncoderParams = CrossEncoderParams(),
    evaluation: RankingEvalParams = RankingEvalParams(),
    promotion: PromotionParams = PromotionParams(),
) -> None:
    """``cross_encoder_training`` with the cross-encoder trained data-parallel on all GPUs of one node."""
    cross_encoder_steps(fingerprint_sources(data), data, retrieval, mining, cross_encoder, evaluation, promotion,
                        train=_train_cross_encoder_on_all_gpus)


def _train_cross_encoder_on_all_gpus(pairs, cross_encoder: CrossEncoderParams, model_fingerprints):
    """Stage the pairs as a file (accelerate passes inputs on a command line), then train on every GPU; the staging
    step carries the base model's fingerprints into the cache key, as the launched step cannot take them."""
    return train_cross_encoder_multi_gpu(train_pairs_file=stage_train_pairs(pairs, model_fingerprints),
                                         cross_encoder_json=cross_encoder.model_dump_json())


@pipeline(on_failure=discard_model_version_on_failure, execution_mode=ExecutionMode.FAIL_FAST)
def sft_training_multi_gpu(
    data: InstructionDataParams,
    sft: MultiGpuSftParams,
    evaluation: GenerationEvalParams = GenerationEvalParams(),
    mc_data: MultipleChoiceDataParams | None = None,
    promotion: PromotionParams = PromotionParams(),
    primary_metric: str = "test_rougeL",
) -> None:
    """``sft_training`` with SFTTrainer run data-parallel on all GPUs of one node (QLoRA excluded by
    ``MultiGpuSftParams``)."""
    fingerprints = fingerprint_instructions(data)
    train, validation, test = load_instructions(data, fingerprints)
    base_model_dir = prepare_causal_lm(sft.model, train, model_fingerprints=role_fingerprints("base_model", sft.model))
    model_dir, training_log, training_stats = train_sft_model_multi_gpu(
        sft_inputs=stage_sft_inputs(base_model_dir, train, validation), sft_json=sft.model_dump_json(),
        template=data.template)
    perplexity, _ = evaluate_perplexity(model_dir, test, evaluation, template=data.template)
    metrics, samples, per_example = evaluate_generations(model_dir, test, evaluation, template=data.template)
    mc_train = mc_test = mc_metrics = None
    if mc_data is not None:
        mc_train, mc_test = load_multiple_choice(mc_data, fingerprint_multiple_choice(mc_data))
        mc_metrics = evaluate_multiple_choice(model_dir, mc_test, evaluation)
    few_shot, few_shot_samples, few_shot_per_example = few_shot_baseline(base_model_dir, train, test, evaluation,
                                                                         data.template, mc_train, mc_test)
    paired = primary_metric == "test_rougeL"  # the metric the evaluators measure per example
    decision = generation_gate(metrics, fingerprints, promotion, primary_metric, {"base_model": sft.model},
                               baseline_metric=f"few_shot_{primary_metric}", other_metrics=[few_shot, perplexity],
                               per_item=per_example if paired else None,
                               baseline_per_item=few_shot_per_example if paired else None)
    build_generation_report(metrics, samples, evaluation, perplexity, mc_metrics, few_shot, few_shot_samples,
                            training_log, title=f"SFT ({sft.method.name}, multi-GPU)", promotion_decision=decision)
