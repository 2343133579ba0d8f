"""Model folders: resolving a model name, loading its tokenizer, the settings saved beside a pair model.

The heads (pipeline/heads/) load and save the models themselves."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.metrics import SIMILAR_AT
from pipeline.paths import SETTINGS_FILE


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


@dataclass(frozen=True)
class ModelSettings:
    """What scoring needs to know about a saved pair model, stored beside its weights."""

    head: str
    base_model: str
    hangul_only: bool
    prefix: str = ""  # prepended to each sentence after normalization (e5: "query: "); folders before it had none
    threshold: float = SIMILAR_AT  # "similar" when score >= threshold (evaluate.threshold); folders before it: KLUE's 3.0

    def save(self, folder: str | Path) -> None:
        (Path(folder) / SETTINGS_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> ModelSettings:
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            raise ConfigError(f"{folder}: not a fine-tuned pair model (no {SETTINGS_FILE})")
        return cls(**json.loads(path.read_text(encoding="utf-8")))
