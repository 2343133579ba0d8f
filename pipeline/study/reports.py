"""What a finished study reports: a row per trial, the summary on the MLflow parent run, reports/study.json."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.tables import write_json

if TYPE_CHECKING:
    from pipeline.study.shipped import ShippedModel


def trial_state_counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


def study_train_seconds(study) -> float:
    """Training time summed over the trials that recorded it (complete ones)."""
    return round(sum(trial.user_attrs.get("train_seconds", 0.0) for trial in study.get_trials(deepcopy=False)), 1)


def trials_table(study) -> list[dict[str, Any]]:
    """One row per trial for reports/study.json."""
    return [
        {
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "params": trial.params,
            "validation": trial.user_attrs.get("validation"),
            "mlflow_run_id": trial.user_attrs.get("mlflow_run_id"),
        }
        for trial in study.get_trials(deepcopy=False)
    ]


def log_study_summary(study, best, shipped: ShippedModel) -> None:
    """On the (active) parent run: best value and params, the shipped model's run, and Optuna's plots as artifacts."""
    import mlflow
    import optuna

    mlflow.set_tags({"best_trial": str(best.number), "best_run_id": best.user_attrs.get("mlflow_run_id", "")})
    mlflow.set_tag("model_run_id", shipped.run_id)  # the run whose model the stage ships
    if shipped.refit is not None:
        mlflow.log_metrics({f"refit_val_{key}": value for key, value in shipped.validation.items()})
    mlflow.log_metric("best_value", best.value)
    mlflow.log_metrics({f"best_val_{key}": value for key, value in best.user_attrs["validation"].items()})
    mlflow.log_dict({"number": best.number, "params": best.params, "value": best.value}, "best_trial.json")
    mlflow.log_dict({"trials": trials_table(study)}, "trials.json")
    import warnings

    import matplotlib
    from optuna.exceptions import ExperimentalWarning

    matplotlib.use("Agg")  # files only, no display
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    with warnings.catch_warnings():
        # optuna marks its matplotlib plots experimental (the interface may change), once per call; we call them as
        # documented, and a change would fail here, in the tests. Other warnings stay visible.
        warnings.filterwarnings("ignore", r".*\bplot_\w+ is experimental", ExperimentalWarning)
        mlflow.log_figure(plot_optimization_history(study).figure, "plots/optimization_history.png")
        if len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) >= 2:
            try:
                mlflow.log_figure(plot_param_importances(study).figure, "plots/param_importances.png")
            except (ValueError, RuntimeError) as error:  # importances need varied params among complete trials
                mlflow.set_tag("plots.param_importances_skipped", str(error)[:250])


def study_metrics(study, best, shipped: ShippedModel, calibration) -> dict[str, Any]:
    """reports/train_metrics.json: the shipped model's validation figures, trial states, cost (study and refit) and
    the calibration evidence."""
    return {
        "validation": shipped.validation,
        "best_trial": best.number,
        "best_trial_validation": best.user_attrs["validation"],
        "trials": trial_state_counts(study),
        "train_seconds": {
            "best_trial": best.user_attrs.get("train_seconds"),
            "study": study_train_seconds(study),
            "refit": None if shipped.refit is None else shipped.refit.train_seconds,
        },
        "calibration": {"applied": calibration.applied, "reason": calibration.reason, **calibration.validation},
    }


def refit_summary(shipped: ShippedModel) -> dict[str, Any] | None:
    """The refit as reports/study.json shows it (no history: that is reports/train_history.json)."""
    refit = shipped.refit
    return None if refit is None else {key: value for key, value in asdict(refit).items() if key != "history"}


def write_study_report(path: Path, study, best, shipped: ShippedModel, parent_run_id: str) -> None:
    """The study for humans and for the register stage: the winner, the refit, what ships (its run is what register
    registers), every trial."""
    write_json(
        path,
        {
            "study_name": study.study_name,
            "parent_run_id": parent_run_id,
            "best_trial": best.number,
            "best_run_id": best.user_attrs.get("mlflow_run_id"),
            "best_params": best.params,
            "best_value": best.value,
            "best_validation": best.user_attrs.get("validation"),
            "refit": refit_summary(shipped),
            "shipped": shipped.summary(),
            "model_run_id": shipped.run_id,  # what register registers
            "validation": shipped.validation,
            "trials": trials_table(study),
        },
    )
