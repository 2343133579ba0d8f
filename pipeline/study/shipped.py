"""The model the train stage ships, decided once: the refit's when the study has one, else the best trial's own.

Everything downstream (models/model, reports/study.json and train_metrics.json, the run register registers, the
results table and the model card) reads this record or what it wrote, never the rule again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.paths import TRIAL_DIR_PREFIX
from pipeline.study.refit import RefitResult


@dataclass(frozen=True)
class ShippedModel:
    """Where the shipped model is, its MLflow run, what it trained on and how it validated."""

    description: str  # for people: "refit of trial 1 on 5,700 pairs + 3,500 NLI triplets (959 s)"
    folder: Path
    run_id: str
    validation: dict[str, float]
    train_pairs: int | None
    nli_triplets: int | None
    train_seconds: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    refit: RefitResult | None = None

    def summary(self) -> dict[str, Any]:
        """What reports/study.json records of it (the history is reports/train_history.json)."""
        keys = ("description", "run_id", "train_pairs", "nli_triplets", "train_seconds")
        return {key: getattr(self, key) for key in keys}


def shipped_model(best, refit: RefitResult | None, trials_dir: Path) -> ShippedModel:
    """The refit of `best` when there is one, else `best` itself (an Optuna trial with its recorded user attrs)."""
    if refit is not None:
        return ShippedModel(
            description=f"refit of trial {refit.trial} on {refit.train_pairs:,} pairs + {refit.nli_triplets:,} NLI "
            f"triplets ({refit.train_seconds:.0f} s)",
            folder=Path(refit.folder),
            run_id=refit.run_id,
            validation=refit.validation,
            train_pairs=refit.train_pairs,
            nli_triplets=refit.nli_triplets,
            train_seconds=refit.train_seconds,
            history=refit.history,
            refit=refit,
        )
    attrs = best.user_attrs
    return ShippedModel(
        description=f"trial {best.number}'s own model (refit.enabled: false)",
        folder=trials_dir / f"{TRIAL_DIR_PREFIX}{best.number}",
        run_id=attrs.get("mlflow_run_id", ""),
        validation=attrs.get("validation", {}),
        train_pairs=attrs.get("train_pairs"),
        nli_triplets=attrs.get("nli_triplets"),
        train_seconds=attrs.get("train_seconds"),
        history=attrs.get("history", []),
    )
