"""Heads: how an encoder scores a sentence pair. HEADS binds each `model.head` value to its implementation.

    cross   pair in one sequence -> sequence-classification model, one logit -> 5 x sigmoid   (cross.py)
    mlp     pair in one sequence -> encoder, pooled -> small MLP -> 5 x sigmoid             (mlp.py)
    bi      each sentence alone -> sentence-transformers embedding -> 5 x cosine          (bi.py)

Every head implements pipeline.heads.base.Head; config's allowed `model.head` values are HEADS' keys, and
nothing outside this package branches on a head's name. Adding a head: a module here and one entry below.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.heads.base import Head, LoadedModel, TrainingJob, TrainingPairs
from pipeline.heads.bi import BiHead
from pipeline.heads.cross import CrossHead
from pipeline.heads.mlp import MlpHead
from pipeline.models import ModelSettings, replace_folder

HEADS: dict[str, Head] = {"cross": CrossHead(), "mlp": MlpHead(), "bi": BiHead()}

__all__ = ["HEADS", "Head", "LoadedModel", "TrainingJob", "TrainingPairs", "save_pair_model"]


def save_pair_model(model, tokenizer, settings: ModelSettings, folder: Path) -> None:
    """The head's own save (safetensors + tokenizer) plus the settings scoring needs, swapped in atomically."""

    def fill(staging: Path) -> None:
        HEADS[settings.head].save(model, tokenizer, staging)
        settings.save(staging)

    replace_folder(folder, fill)
