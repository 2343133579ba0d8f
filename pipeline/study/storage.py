"""The study's persistent state: the Optuna storage (heartbeats, resumption) and its MLflow parent run.

Storage is persistent (SQLite by default): a killed train stage resumes the same study, keeps every
finished trial, and retries a trial whose worker died (heartbeat + RetryHeartbeatStaleTrialCallback).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError
from pipeline.study.space import make_pruner

if TYPE_CHECKING:
    from pipeline.config import StudyParams

STUDY_ROLE_TAG = "korean_sts.role"
STUDY_NAME_TAG = "optuna.study_name"
STATE_TAG = "optuna.state"
WORKER_SEED_STRIDE = 7919
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def open_study(params: StudyParams, name: str, storage_url: str, worker_index: int = 0):
    """Create or load the study in persistent storage, with heartbeats so a dead worker's trial is retried."""
    import warnings

    import optuna
    from optuna.exceptions import ExperimentalWarning

    try:
        with warnings.catch_warnings():
            # Known and chosen: heartbeats and the retry callback are how a dead worker's trial is retried (optuna marks
            # both experimental since 2.8 and warns on every open); other warnings stay visible.
            known = r"(Argument ``heartbeat_interval``|RetryHeartbeatStaleTrialCallback)"
            warnings.filterwarnings("ignore", known, ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                storage_url,
                heartbeat_interval=params.heartbeat_seconds,
                grace_period=params.heartbeat_seconds * 3,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=params.max_retries),
            )
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            pruner=make_pruner(params.pruner),
            direction="maximize",
            load_if_exists=True,
        )
    except Exception as error:  # SQLAlchemy and drivers raise many kinds; all mean the storage is unusable
        raise PipelineError(f"cannot open Optuna study {name!r} at {storage_url}: {error}") from error
    # A resumed study with the same sampler seed would replay the draws of its first run (seen: trial 3
    # repeated trial 1), and two workers with one seed would draw the same params. Offsetting the seed by
    # the stored trial count and the worker index keeps runs reproducible and new; constant_liar keeps
    # parallel workers from sampling next to each other's running trials.
    seed = params.seed + len(study.get_trials(deepcopy=False)) + WORKER_SEED_STRIDE * worker_index
    study.sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return study


def retry_trials_of_dead_workers(study, heartbeat_seconds: int) -> None:
    """After every local worker has exited, trials still RUNNING belong to dead workers: fail and retry them.

    Waits out the heartbeat grace period first, so Optuna's own stale-trial check takes them.
    """
    import time

    import optuna

    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        time.sleep(heartbeat_seconds * 3 + 1)
        optuna.storages.fail_stale_trials(study)


def close_orphaned_runs(study) -> list[str]:
    """End as FAILED the MLflow runs of trials whose process died (Optuna failed them by heartbeat).

    Their runs were left RUNNING by the killed process; returns the run ids closed.
    """
    import mlflow
    import optuna
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    closed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id:
            continue
        try:
            run = client.get_run(run_id)
        except MlflowException:
            continue
        if run.info.status == "RUNNING":
            client.set_tag(run_id, STATE_TAG, "FAIL")
            client.set_terminated(run_id, status="FAILED")
            closed.append(run_id)
    return closed


def find_parent_run(experiment_id: str, study_name: str) -> str | None:
    """The study's parent run from an earlier (possibly killed) train stage, to resume under it."""
    import mlflow

    runs = mlflow.search_runs(
        [experiment_id],
        filter_string=f"tags.`{STUDY_NAME_TAG}` = '{study_name}' and tags.`{STUDY_ROLE_TAG}` = 'study'",
        output_format="list",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None
