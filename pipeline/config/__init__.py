"""params.yaml -> typed, validated objects (pydantic). The only package that reads params.yaml
(the sections: sections.py). A pure schema: it imports no stage, head or model code, so a stage's DVC deps
do not grow with the heads; names that only the heads know (`model.head`) are checked in pipeline.heads.

Every section is a frozen pydantic model that rejects unknown keys and mistyped values (strict; an int
passes for a float); a problem is one ConfigError line naming the key. The service and the package stage
read `serve` through `load_serve_settings`, which adds the `KSTS_SERVE_<KEY>` environment overrides.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.config.sections import (
    DataParams,
    EvaluateParams,
    LearningCurveParams,
    MlflowParams,
    ModelParams,
    PreprocessParams,
    RefitParams,
    RegisterParams,
    SearchSpace,
    Section,
    ServeSettings,
    StudyParams,
    TrainParams,
)
from pipeline.errors import ConfigError, describe_errors
from serving.settings import PARAMS_FILE, SERVE_ENV_PREFIX, load_serve_settings, read_yaml

__all__ = [  # the sections live in sections.py; the stages import them from here with the rest of the config
    "PARAMS_FILE", "SERVE_ENV_PREFIX", "DataParams", "EvaluateParams", "LearningCurveParams", "MlflowParams",
    "ModelParams", "Params", "PreprocessParams", "RefitParams", "RegisterParams", "SearchSpace", "ServeSettings",
    "StudyParams", "TrainParams",
    "load_params", "load_serve_settings", "parse_params", "resolve_path",
]  # fmt: skip


with warnings.catch_warnings():
    # `register` also names ABCMeta.register on the class; the field still reads as params.register.
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class Params(Section):
        """All of params.yaml."""

        data: DataParams
        preprocess: PreprocessParams
        model: ModelParams
        train: TrainParams
        study: StudyParams
        refit: RefitParams
        mlflow: MlflowParams
        evaluate: EvaluateParams
        register: RegisterParams
        serve: ServeSettings
        learning_curve: LearningCurveParams


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as loaded from YAML) into Params."""
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_errors(Params, error)) from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    return parse_params(read_yaml(Path(path)))


def resolve_path(value: str, base: str | Path = ".") -> Path:
    """A path from params, relative to the repository root (the working directory of every stage)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (Path(base) / path).resolve()
