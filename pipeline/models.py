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


def input_token_limit(folder: str | Path, tokenizer) -> int:
    """Where every runtime truncates an input of the saved pair model in folder (the one home of that length).

    The length training saved with the tokenizer (model.max_length), capped at the encoder's position embeddings
    exactly as sentence-transformers caps it when it loads a saved bi-encoder: the torch path, the ONNX graphs and
    training then read the same tokens.
    """
    config = Path(folder) / "config.json"
    positions = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings") if config.is_file() else None
    if positions is None or positions == -1:  # -1: no limit (xlnet), as sentence-transformers reads it
        return tokenizer.model_max_length
    return min(tokenizer.model_max_length, positions)


def load_model_tokenizer(folder: str | Path):
    """A saved pair model's tokenizer whose model_max_length is input_token_limit: tokenize with truncation=True."""
    tokenizer = load_tokenizer(str(folder))
    tokenizer.model_max_length = input_token_limit(folder, tokenizer)
    return tokenizer


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
