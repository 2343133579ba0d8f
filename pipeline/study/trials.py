"""Running trials in this process: the study's callbacks (keep the best model, retry, stop at the budget)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import distributed
from pipeline.paths import TRIAL_DIR_PREFIX
from pipeline.study.budget import TrialBudget
from pipeline.study.objective import StudyContext, make_objective
from pipeline.study.space import pick_best_trial

if TYPE_CHECKING:
    from pipeline.config import StudyParams


def keep_only_best_model(trials_dir: Path, objective: str, f1_tolerance: float) -> Callable:
    """A study callback: after each trial, delete saved models of finished trials that are not the best.

    Models of trials still running (in parallel workers) are left alone: they may become the best.
    """

    def callback(study, _trial) -> None:
        trials = study.get_trials(deepcopy=False)
        best = pick_best_trial(trials, objective, f1_tolerance)
        finished = {
            f"{TRIAL_DIR_PREFIX}{trial.number}"
            for trial in trials
            if trial.state.is_finished() and (best is None or trial.number != best.number)
        }
        for folder in trials_dir.glob(f"{TRIAL_DIR_PREFIX}*"):
            if folder.name in finished:
                shutil.rmtree(folder, ignore_errors=True)

    return callback


def retry_failed_trials(max_retries: int) -> Callable:
    """A study callback: a trial that raised is queued again with the same params, up to max_retries times.

    (Trials whose worker died are retried by RetryHeartbeatStaleTrialCallback in the storage.)
    """
    import optuna

    def callback(study, trial) -> None:
        if trial.state != optuna.trial.TrialState.FAIL:
            return
        retries = trial.user_attrs.get("retries", 0)
        if retries < max_retries:
            study.enqueue_trial(trial.params, user_attrs={"retries": retries + 1, "retry_of": trial.number})

    return callback


def stop_after(n_trials: int, max_failures: int) -> Callable:
    """A study callback: stop once the budget's trials are finished (complete or pruned), or too many failed."""
    import optuna

    def callback(study, _trial) -> None:
        failed = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)))
        if TrialBudget.of(study, n_trials).complete or failed > max_failures:
            study.stop()

    return callback


def study_callbacks(params: StudyParams, trials_dir: Path) -> list[Callable]:
    return [
        keep_only_best_model(trials_dir, params.objective, params.f1_tolerance),
        retry_failed_trials(params.max_retries),
        stop_after(params.n_trials, max_failures=(params.max_retries + 1) * params.n_trials),
    ]


def run_trials(study, context: StudyContext, n_trials: int | None) -> None:
    """Run up to n_trials trials in this process (None: until the study has params.n_trials finished)."""
    study.optimize(
        make_objective(context),
        n_trials=n_trials,
        timeout=context.params.timeout_seconds,
        # A data-parallel trial that raised may have left other ranks inside a collective: stop, do not go on.
        catch=() if distributed.active() else (RuntimeError, ValueError),
        callbacks=study_callbacks(context.params, context.trials_dir),
    )
