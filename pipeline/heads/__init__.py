"""Heads: how an encoder scores a sentence pair. HEADS binds each `model.head` value to its implementation.

    cross   pair in one sequence -> sequence-classification model, one logit -> 5 x sigmoid   (cross.py)
    mlp     pair in one sequence -> encoder, pooled -> small MLP -> 5 x sigmoid             (mlp.py)
    bi      each sentence alone -> sentence-transformers embedding -> 5 x cosine          (bi.py)

Every head implements pipeline.heads.base.Head; config's allowed `model.head` values are HEADS' keys, and
nothing outside this package branches on a head's name. Adding a head: a module here and one entry below.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError
from pipeline.heads.base import Head, LoadedModel, TrainingJob, TrainingPairs
from pipeline.heads.bi import BiHead
from pipeline.heads.cross import CrossHead
from pipeline.heads.mlp import MlpHead
from pipeline.models import ModelSettings
from pipeline.swap import replace_folder

if TYPE_CHECKING:
    from pipeline.config import ModelParams, RefitParams, TrainParams

HEADS: dict[str, Head] = {"cross": CrossHead(), "mlp": MlpHead(), "bi": BiHead()}

__all__ = ["HEADS", "Head", "LoadedModel", "TrainingJob", "TrainingPairs", "check_head_params", "head_named", "save_pair_model"]


def head_named(name: str) -> Head:
    """The head registered as `name` (model.head, or a saved model's settings); a one-line ConfigError otherwise."""
    try:
        return HEADS[name]
    except KeyError:
        raise ConfigError(f"model.head: {name!r} is not a head; choose one of {', '.join(HEADS)}") from None


def check_head_params(model: ModelParams, train: TrainParams, refit: RefitParams | None = None) -> Head:
    """The params rules only the heads know: model.head names a head, NLI triplets (of the trials or the refit)
    need one that trains on them, and train.loss one whose trainer takes that loss (Head.losses)."""
    head = head_named(model.head)
    refit_nli = refit is not None and refit.enabled and refit.nli_triplets != 0
    for key, wanted in (("train.nli_triplets", train.nli_triplets != 0), ("refit.nli_triplets", refit_nli)):
        if wanted and not head.trains_on_triplets:
            heads = [name for name, candidate in HEADS.items() if candidate.trains_on_triplets]
            raise ConfigError(
                f"{key} needs model.head: {' or '.join(heads)} (it trains sentence embeddings); "
                f"set it to 0 for model.head {model.head}"
            )
    if train.loss not in head.losses:
        heads = [name for name, candidate in HEADS.items() if train.loss in candidate.losses]
        raise ConfigError(
            f"train.loss {train.loss} needs model.head: {' or '.join(heads)} (model.head {model.head} trains with "
            f"{' or '.join(head.losses)})"
        )
    return head


def save_pair_model(model, tokenizer, settings: ModelSettings, folder: Path) -> None:
    """The head's own save (safetensors + tokenizer) plus the settings scoring needs, swapped in atomically."""

    def fill(staging: Path) -> None:
        head_named(settings.head).save(model, tokenizer, staging)
        settings.save(staging)

    replace_folder(folder, fill)
