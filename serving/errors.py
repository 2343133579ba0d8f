"""Errors a user can fix: bad configuration, an input the model cannot score. Shared by the pipeline (pipeline.errors
adds its own and the stage wrapper) and the service, which must not import the pipeline."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


class PipelineError(Exception):
    """A problem with the user's input (params, data files, model folder): reported, not traced."""


class ConfigError(PipelineError):
    """params.yaml is missing a key, has an unknown key, or a value of the wrong type or range."""


class UnscorableInput(ValueError):
    """The model cannot score this input: a fault of the input, not of the code (the service answers it with 400)."""


def _location(model: type[BaseModel], loc: tuple) -> str:
    """A pydantic error location as params keys: section.key[index], without union member tags."""
    parts, current = [], model
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            parts.append(("." if parts else "") + part)
            annotation = current.model_fields[part].annotation
            current = annotation if isinstance(annotation, type) else None
    return "".join(parts)


def describe_errors(model: type[BaseModel], error: ValidationError, where: str = "") -> str:
    """A ValidationError as one line: unknown and missing keys grouped, every other problem with its key and value."""

    def key_of(loc: tuple) -> str:
        return ".".join(part for part in (where, _location(model, loc)) if part) or "params"

    grouped: dict[tuple[str, str], list[str]] = {}
    problems: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for item in error.errors(include_url=False):
        if item["type"] in ("extra_forbidden", "missing"):
            label = "unknown" if item["type"] == "extra_forbidden" else "missing"
            grouped.setdefault((key_of(item["loc"][:-1]), label), []).append(str(item["loc"][-1]))
            continue
        key = key_of(item["loc"])
        problems.setdefault(key, []).append(item["msg"].removeprefix("Value error, "))  # union members: one message each
        if item["type"] != "value_error":
            values[key] = item["input"]
    lines = [f"{section}: {label} key(s) {sorted(names)}" for (section, label), names in grouped.items()]
    lines += [
        f"{key}: {' or '.join(messages)}" + (f", got {values[key]!r}" if key in values else "")
        for key, messages in problems.items()
    ]
    return "; ".join(lines)
