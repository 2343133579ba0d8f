"""Model folders: resolving a model name, loading its tokenizer, the settings saved beside a pair model.

The heads (pipeline/heads/) load and save the models themselves."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import ConfigError
from serving.pair_model import ModelSettings
from serving.pair_model import input_token_limit as token_limit_of

__all__ = [
    "ModelSettings", "input_token_limit", "load_model_tokenizer", "load_tokenizer", "resolve_model_source", "tokenizer_overrides",
]  # fmt: skip


def resolve_model_source(name: str) -> str:
    """A model name other than model.name (study.search.model_name) -> what from_pretrained takes.

    model.name itself is read from models/base, which the base stage materialized (pipeline.sources).
    Here `package:<module>/<folder>` is a folder inside an installed package, an existing path a local
    folder, anything else a Hugging Face Hub id; packed files need the base stage's conversion.
    """
    from pipeline.sources import source_kind
    from pipeline.sources.folder import model_folder, package_path

    kind, location = source_kind(name)
    if kind == "package":
        return str(model_folder(package_path(location, name)[1], name))
    if kind == "folder":
        return str(model_folder(Path(location).expanduser(), name))
    if kind != "hub":
        raise ConfigError(f"{name!r} must be converted by the base stage first: use it as model.name, not in study.search")
    return name


def tokenizer_overrides(lowercase: bool | None) -> dict[str, bool]:
    """model.lowercase -> tokenizer kwargs. Lower-casing also strips accents, which decomposes Hangul into jamo."""
    return {} if lowercase is None else {"do_lower_case": lowercase}


def load_tokenizer(source: str, lowercase: bool | None = None):
    """The encoder's own tokenizer (never remote code); lowercase overrides its lower-casing when not None."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False, **tokenizer_overrides(lowercase))
    except OSError as error:
        raise ConfigError(f"cannot load a tokenizer from {source!r}: {error}") from error


def input_token_limit(folder: str | Path, tokenizer) -> int:
    """serving.pair_model.input_token_limit for a loaded transformers tokenizer."""
    return token_limit_of(folder, tokenizer.model_max_length)


def load_model_tokenizer(folder: str | Path):
    """A saved pair model's tokenizer whose model_max_length is input_token_limit: tokenize with truncation=True."""
    tokenizer = load_tokenizer(str(folder))
    tokenizer.model_max_length = input_token_limit(folder, tokenizer)
    return tokenizer
