"""The study's search space, its first trial and its winner rule (what names a study: identity.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import SearchSpace, TrainParams


@dataclass(frozen=True)
class TrialSetup:
    """What one trial trains: its TrainParams and the encoder it fine-tunes."""

    train: TrainParams
    model_name: str


def suggest_trial_setup(trial, search: SearchSpace, base: TrainParams, model_name: str) -> TrialSetup:
    """Sample the search space (the seed's: log-uniform lr and weight decay, batch size, epochs, warmup)."""
    train = base.model_copy(
        update={
            "learning_rate": trial.suggest_float("learning_rate", *search.learning_rate, log=True),
            "batch_size": trial.suggest_categorical("batch_size", search.batch_size),
            "weight_decay": trial.suggest_float("weight_decay", *search.weight_decay, log=True),
            "epochs": trial.suggest_int("epochs", *search.epochs),
            "warmup_ratio": trial.suggest_float("warmup_ratio", *search.warmup_ratio),
        }
    )
    if search.model_name:
        model_name = trial.suggest_categorical("model_name", search.model_name)
    return TrialSetup(train=train, model_name=model_name)


def baseline_trial_params(train: TrainParams, search: SearchSpace, model_name: str) -> dict[str, Any]:
    """params.yaml's hand-set `train` values as the study's first trial."""
    values = {name: getattr(train, name) for name in ("learning_rate", "batch_size", "weight_decay", "epochs", "warmup_ratio")}
    if search.model_name:
        values["model_name"] = model_name
    return values


def pick_best_trial(trials: list, objective: str, f1_tolerance: float):
    """The study's winner among complete trials.

    objective "f1" is the seed's rule: highest validation F1; among trials within f1_tolerance of it, the
    lowest validation loss wins. objective "pearson": highest validation Pearson.
    """
    import optuna

    complete = [trial for trial in trials if trial.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    top = max(trial.value for trial in complete)
    if objective == "pearson":
        return next(trial for trial in complete if trial.value == top)
    close = [trial for trial in complete if trial.value >= top - f1_tolerance]
    return min(close, key=lambda trial: (trial.user_attrs["validation"]["loss"], trial.number))


def make_pruner(name: str):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()
