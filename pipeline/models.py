"""Finding, loading and saving encoders and fine-tuned pair models; the only place that calls from_pretrained."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.errors import ConfigError

SETTINGS_FILE = "similarity.json"


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


def load_cross_encoder(source: str):
    """A sequence-classification model with one regression output, from safetensors weights.

    Also loads a saved `mlp` model: pipeline.heads registers its classes with the Auto classes.
    """
    from transformers import AutoModelForSequenceClassification

    import pipeline.heads  # noqa: F401  (registers the mlp head)

    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, problem_type="regression", use_safetensors=True, trust_remote_code=False
        )
    except OSError as error:
        raise ConfigError(f"cannot load safetensors weights from {source!r}: {error}") from error


def load_mlp_model(source: str, pooling: str, mlp_hidden: int, mlp_dropout: float):
    """A new `mlp` head on a pretrained encoder."""
    from pipeline.heads import PairMlpModel

    try:
        return PairMlpModel.from_encoder(source, pooling, mlp_hidden, mlp_dropout)
    except OSError as error:
        raise ConfigError(f"cannot load safetensors weights from {source!r}: {error}") from error


def load_bi_encoder(source: str, max_length: int | None = None, pooling: str = "mean", lowercase: bool | None = None):
    """A sentence-transformers bi-encoder: a saved one as is, or a plain encoder plus a pooling layer."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    try:
        if (Path(source) / "modules.json").is_file():
            model = SentenceTransformer(
                source, local_files_only=True, trust_remote_code=False, model_kwargs={"use_safetensors": True}
            )
        else:
            encoder = Transformer(
                source,
                model_kwargs={"use_safetensors": True},
                processor_kwargs=tokenizer_overrides(lowercase),
                max_seq_length=max_length,
            )
            model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), pooling)])
    except OSError as error:
        raise ConfigError(f"cannot load a bi-encoder from {source!r}: {error}") from error
    if max_length is not None:
        model.max_seq_length = max_length
    return model


@dataclass(frozen=True)
class ModelSettings:
    """What scoring needs to know about a saved pair model, stored beside its weights."""

    head: str
    base_model: str
    hangul_only: bool
    prefix: str = ""  # prepended to each sentence after normalization (e5: "query: "); folders before it had none

    def save(self, folder: str | Path) -> None:
        (Path(folder) / SETTINGS_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> ModelSettings:
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            raise ConfigError(f"{folder}: not a fine-tuned pair model (no {SETTINGS_FILE})")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def replace_folder(target: Path, fill: Callable[[Path], None]) -> None:
    """Fill a staging folder beside target, then swap it in whole: a crash never leaves a half model."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        fill(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def save_pair_model(model, tokenizer, settings: ModelSettings, folder: Path) -> None:
    """save_pretrained (safetensors) + tokenizer + the settings scoring needs.

    A bi-encoder (sentence-transformers) saves its own tokenizer and modules: pass tokenizer=None.
    """

    def fill(staging: Path) -> None:
        model.save_pretrained(str(staging), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        settings.save(staging)

    replace_folder(folder, fill)
