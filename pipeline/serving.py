"""Settings of the BentoML service (service.py) and the package stage: defaults < params.yaml `serve:` < environment.

Kept free of BentoML and torch imports so that the service, the package stage, the benchmarks and the
tests can all read the same settings cheaply. Environment overrides are named `KSTS_SERVE_<KEY>` (for
example `KSTS_SERVE_BATCHING=false`, `KSTS_SERVE_WORKERS=1`): the benchmark uses them to serve one Bento
with and without adaptive batching.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

ENV_PREFIX = "KSTS_SERVE_"
SECTION = "serve"
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """How the similarity service loads its model, batches requests and bounds its inputs."""

    model_name: str = "korean-sts-similarity"  # BentoML model name of the champion (a Bento pins its exact version)
    batching: bool = True  # adaptive batching of similarity_batch; false: one forward pass per request
    # Measured with bench/serve_load.py on 2 cores (MiniLM cross-encoder): see README, Serving.
    max_batch_size: int = 32  # most pairs in one adaptive batch
    max_latency_ms: int = 10000  # queue's hard limit: a request expected to wait longer gets 503 (2000: 503s at c=64)
    forward_batch_size: int = 4  # pairs per forward pass in an adaptive batch, length-sorted (4-8: 30 pairs/s, 1: 22)
    workers: int = 2  # server processes, each with its own model copy and batch queue (1 x 2 threads: 4x slower)
    torch_threads: int = 1  # torch intra-op threads per worker
    timeout_seconds: int = 30  # a request still running after this is answered 504
    max_pairs_per_request: int = 64  # longer similarity_batch lists are refused with 400
    max_chars_per_sentence: int = 1000  # longer sentences are refused with 400 (the model reads 128 tokens anyway)
    max_request_bytes: int = 1_048_576  # larger request bodies are refused with 413 before they are parsed
    device: str | None = None  # null: CUDA when present, else CPU

    @property
    def model_tag(self) -> str:
        """The BentoML tag the service loads: `<model_name>:latest` unless model_name already names a version."""
        return self.model_name if ":" in self.model_name else f"{self.model_name}:latest"


def _parse_env_value(raw: str, annotation: Any, name: str) -> Any:
    """A `KSTS_SERVE_*` string -> the field's type; a bad value is a ConfigError naming the variable."""
    variable = ENV_PREFIX + name.upper()
    options = typing.get_args(annotation)
    if type(None) in options:
        if raw.strip().lower() in {"", "null", "none"}:
            return None
        (annotation,) = [option for option in options if option is not type(None)]
    if annotation is bool:
        word = raw.strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise ConfigError(f"{variable}={raw!r}: expected true or false")
    if annotation is int:
        try:
            return int(raw)
        except ValueError as error:
            raise ConfigError(f"{variable}={raw!r}: expected an integer") from error
    return raw


def check_settings(settings: ServeSettings) -> ServeSettings:
    """Range checks; returns the settings unchanged when they pass."""
    positive = (
        "max_latency_ms",
        "forward_batch_size",
        "workers",
        "torch_threads",
        "timeout_seconds",
        "max_pairs_per_request",
        "max_chars_per_sentence",
        "max_request_bytes",
    )
    for name in positive:
        if getattr(settings, name) < 1:
            raise ConfigError(f"serve.{name} must be at least 1, got {getattr(settings, name)}")
    if settings.max_batch_size < 2:
        raise ConfigError(f"serve.max_batch_size must be at least 2 (BentoML's rule), got {settings.max_batch_size}")
    if not settings.model_name.strip():
        raise ConfigError("serve.model_name must not be empty")
    return settings


def load_serve_settings(
    params_path: str | Path | None = "params.yaml", environ: Mapping[str, str] | None = None
) -> ServeSettings:
    """Defaults, then the `serve:` section of params_path (when the file and the section exist), then KSTS_SERVE_*."""
    from pipeline.config import build_section  # local import: config may import this module

    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(ServeSettings)}
    if params_path is not None and Path(params_path).is_file():
        try:
            raw = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{params_path}: not valid YAML: {error}") from error
        section = raw.get(SECTION) if isinstance(raw, dict) else None
        if section is not None:
            if not isinstance(section, dict):
                raise ConfigError(f"{SECTION}: expected a mapping, got {section!r}")
            unknown = sorted(set(section) - set(values))
            if unknown:
                raise ConfigError(f"{SECTION}: unknown key(s) {unknown}; expected {sorted(values)}")
            values.update(section)
    hints = typing.get_type_hints(ServeSettings)
    for name in values:
        raw_value = environ.get(ENV_PREFIX + name.upper())
        if raw_value is not None:
            values[name] = _parse_env_value(raw_value, hints[name], name)
    return check_settings(build_section(ServeSettings, values, SECTION))


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server the tests or a benchmark start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
