"""The service's settings: params.yaml's `serve:` section as a typed, validated object, with KSTS_SERVE_<KEY>
environment overrides. The pipeline's params schema (pipeline.config) takes this section and the Section base
from here, so the service reads its settings without importing the pipeline."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.errors import ConfigError, describe_errors

PARAMS_FILE = "params.yaml"
SERVE_ENV_PREFIX = "KSTS_SERVE_"


class Section(BaseModel):
    """A params section: frozen, no unknown keys, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServeSettings(Section):
    """How the service loads its model, batches requests and bounds its inputs (measured: docs/serving.md)."""

    model_name: str = Field(min_length=1)  # BentoML model name of the champion (a Bento pins its exact version)
    batching: bool  # adaptive batching of similarity_batch; false: one forward pass per request
    max_batch_size: int = Field(ge=2)  # most pairs in one adaptive batch (BentoML needs at least 2)
    max_latency_ms: int = Field(ge=1)  # a request expected to wait longer in the queue gets 503
    forward_batch_size: int = Field(ge=1)  # pairs per forward pass in an adaptive batch, length-sorted
    workers: int = Field(ge=1)  # server processes, each with its own model copy and batch queue
    torch_threads: int = Field(ge=1)  # intra-op threads per worker (torch, or ONNX Runtime on an onnx runtime)
    timeout_seconds: int = Field(ge=1)  # a request still running after this is answered 504
    max_pairs_per_request: int = Field(ge=1)  # longer similarity_batch lists are refused with 400
    max_chars_per_sentence: int = Field(ge=1)  # longer sentences are refused with 400
    max_request_bytes: int = Field(ge=1)  # larger request bodies are refused with 413 before parsing
    body_timeout_seconds: float = Field(gt=0)  # a body not received in full this long after the headers gets 408
    device: str | None  # null: CUDA when present, else CPU
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"]  # pipeline.runtimes.RUNTIMES; auto: the fastest that passes the gate
    gate_tolerance: float = Field(ge=0)  # an optimized runtime's F1 (model's threshold) and Pearson stay this close to fp32's
    gate_max_shift: float = Field(ge=0)  # ... and the validation pairs' score shifts, at gate_shift_percentile, at most this
    gate_shift_percentile: float = Field(gt=0, le=100)  # which percentile of the shifts (100: the largest; runtimes/gate.py)
    embedding_cache_size: int = Field(ge=0)  # bi head: sentences whose embeddings a worker keeps (LRU); 0: off

    @property
    def model_tag(self) -> str:
        """The BentoML tag the service loads: `<model_name>:latest` unless model_name already names a version."""
        return self.model_name if ":" in self.model_name else f"{self.model_name}:latest"


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: not found (run from the repository root)") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error


def load_serve_settings(params_path: str | Path = PARAMS_FILE, environ: Mapping[str, str] | None = None) -> ServeSettings:
    """The service's settings: params.yaml's `serve:` section, then the KSTS_SERVE_<KEY> environment overrides.

    Only that section is validated, so a Bento's params.yaml needs no other. Environment values are strings
    parsed to the field's type (true/false, integers; "null" for none); a bad one names its variable.
    """
    environ = os.environ if environ is None else environ
    raw = read_yaml(Path(params_path))
    try:
        settings = ServeSettings.model_validate(raw.get("serve") if isinstance(raw, dict) else None)
    except ValidationError as error:
        raise ConfigError(describe_errors(ServeSettings, error, "serve")) from None
    overrides = {
        name: None if raw_value.strip().lower() in {"null", "none"} else raw_value
        for name in ServeSettings.model_fields
        if (raw_value := environ.get(SERVE_ENV_PREFIX + name.upper())) is not None
    }
    try:
        return ServeSettings.model_validate({**settings.model_dump(), **overrides}, strict=False)
    except ValidationError as error:
        names = ", ".join(f"{SERVE_ENV_PREFIX}{item['loc'][0]}".upper() for item in error.errors())
        raise ConfigError(f"{names}: {describe_errors(ServeSettings, error, 'serve')}") from None
