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
from pipelines.generation import sft_steps
from pipelines.ranking import cross_encoder_steps
from steps.data.fingerprint_instructions import fingerprint_instructions
from steps.data.fingerprint_sources import fingerprint_sources
from steps.registry.hooks import discard_model_version_on_failure
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
    sft_steps(fingerprint_instructions(data), data, sft, evaluation, mc_data, promotion, primary_metric,
              train=_train_sft_on_all_gpus, variant=", multi-GPU")


def _train_sft_on_all_gpus(base_model_dir, tokenized_train, tokenized_validation, sft: MultiGpuSftParams):
    """Stage the base model and the tokenized splits as files (accelerate passes inputs on a command line), then run
    SFT on every GPU."""
    return train_sft_model_multi_gpu(sft_inputs=stage_sft_inputs(base_model_dir, tokenized_train, tokenized_validation),
                                     sft_json=sft.model_dump_json())
