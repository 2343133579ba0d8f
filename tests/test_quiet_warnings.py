"""Known, checked library warnings stay off the console where we call those libraries (the ONNX export, int8
quantization, optuna's plots and heartbeat), narrowly: other warnings, and the process's warning filters, are left as
they were."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna

from pipeline.heads import HEADS
from pipeline.runtimes.onnx import quantize_int8
from tests.conftest import REPO
from tests.test_runtimes import bi_folder  # noqa: F401

PREPROCESSING_ADVICE = "Please consider to run pre-processing before quantization"


def test_the_onnx_export_and_quantization_show_none_of_their_known_warnings(bi_folder, tmp_path, caplog):  # noqa: F811
    filters = list(warnings.filters)
    root_filters = list(logging.getLogger().filters)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")  # every warning, even those Python or pytest would hide
        graph = HEADS["bi"].export_onnx(bi_folder, tmp_path / "model.onnx")
        quantize_int8(graph, tmp_path / "model_int8.onnx")
    messages = [f"{warning.category.__name__}: {warning.message}" for warning in caught]
    assert not [text for text in messages if "TracerWarning" in text or "aten::index" in text], messages
    # narrow: torch's notice that the TorchScript exporter is deprecated (hidden outside __main__) still comes through
    assert any(warning.category is DeprecationWarning and "TorchScript" in str(warning.message) for warning in caught), messages
    assert not [record for record in caplog.records if PREPROCESSING_ADVICE in record.getMessage()]
    assert list(warnings.filters) == filters and logging.getLogger().filters == root_filters


def test_the_study_plots_show_no_experimental_warning(tmp_path):
    import mlflow

    from pipeline.study.reports import log_study_summary
    from pipeline.study.shipped import shipped_model

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        value = trial.suggest_float("learning_rate", 1e-5, 1e-4) * 1e4 + trial.suggest_int("epochs", 1, 3)
        trial.set_user_attr("validation", {"pearson": value})
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=4)
    experiment_id = mlflow.create_experiment("quiet-warnings")  # explicit: an earlier test may leave another active
    with mlflow.start_run(experiment_id=experiment_id), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_study_summary(study, study.best_trial, shipped_model(study.best_trial, None, Path("studies")))  # no refit
        artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(mlflow.active_run().info.run_id, "plots")}
    assert artifacts == {"plots/optimization_history.png", "plots/param_importances.png"}
    assert not [warning for warning in caught if issubclass(warning.category, optuna.exceptions.ExperimentalWarning)], [
        str(warning.message) for warning in caught
    ]


def test_opening_a_study_with_heartbeats_shows_no_experimental_warning(tmp_path):
    """The heartbeat and the stale-trial retry are chosen on purpose (docs/reliability.md): optuna's experimental notices
    about them are filtered where the study is opened; the study still gets both."""
    from pipeline.config import load_params
    from pipeline.study.storage import open_study

    params = load_params(REPO / "params.yaml").study
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study = open_study(params, "quiet", f"sqlite:///{tmp_path / 'optuna.db'}")
    assert study._storage.get_heartbeat_interval() == params.heartbeat_seconds
    assert study._storage.get_heartbeat_stale_trial_callback() is not None
    assert not [warning for warning in caught if issubclass(warning.category, optuna.exceptions.ExperimentalWarning)], [
        str(warning.message) for warning in caught
    ]
