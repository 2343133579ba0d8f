"""The study as the train stage runs it: connect to the stores, run the missing trials (here and in local
workers), pick the winner. params.yaml's `train` values are the first trial; the sampler explores
`study.search` from there. One MLflow parent run per study, one nested run per trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.heads import TrainingPairs, check_head_params
from pipeline.models import ModelSettings, resolve_model_source
from pipeline.paths import BASE_DIR, CLEAN_DIR, STUDIES_DIR
from pipeline.study import reports, storage
from pipeline.study.budget import TrialBudget
from pipeline.study.identity import study_identity
from pipeline.study.objective import StudyContext
from pipeline.study.refit import train_refit
from pipeline.study.shipped import ShippedModel, shipped_model
from pipeline.study.space import baseline_trial_params, pick_best_trial
from pipeline.study.trials import run_trials
from pipeline.study.workers import start_workers
from pipeline.tables import split_path

if TYPE_CHECKING:
    from pipeline.config import Params

IDENTITY_COVERS = "params, data, base model, tokenized data and train code"


@dataclass
class StudyHandles:
    """The study, the trial context and the MLflow experiment, as every worker sees them."""

    study: Any
    context: StudyContext
    experiment_id: str
    tags: dict[str, str]


def study_name_and_tags(params: Params, root: Path) -> tuple[str, dict[str, str]]:
    """The stored study's name (<study.name>-<identity digest>) and the tags of its MLflow runs (parent and trials):
    the study, its identity (params, data, base model, tokenized data, code: pipeline.study.identity) and the
    data lineage (pipeline.tracking.lineage_tags)."""
    from pipeline.tracking import git_commit, lineage_tags

    identity = study_identity(params, root)
    study_name = f"{params.study.name}-{identity.digest}"
    tags = {
        storage.STUDY_NAME_TAG: study_name,
        "git_commit": git_commit(root),
        "dvc_params_hash": identity.params_digest,
        "study.identity": identity.digest,
    }
    return study_name, {**tags, **lineage_tags(root)}


def nli_triplets(params: Params):
    """The clean NLI triplets of train.nli_sources as a Dataset when the trials or the refit train on any (finetune
    takes each one's subset), else None."""
    refit_wants = params.refit.enabled and params.refit.nli_triplets != 0
    if params.train.nli_triplets == 0 and not refit_wants:
        return None
    import datasets

    from pipeline.nli import NLI, from_sources

    triplets = datasets.Dataset.from_json(str(split_path(CLEAN_DIR, NLI)))
    return triplets.filter(lambda row: from_sources(row["source"], params.train.nli_sources))


def study_context(params: Params, study_name: str, tags: dict[str, str]) -> StudyContext:
    """What every trial needs (the parent run id is filled in once the parent run exists)."""
    head, pairs_cache = check_head_params(params.model, params.train, params.refit), {}

    def pairs_for_model(name: str) -> TrainingPairs:
        if name not in pairs_cache:
            pairs_cache[name] = head.training_pairs(params.model, name)
        return pairs_cache[name]

    return StudyContext(
        params=params.study,
        base_train=params.train,
        model=params.model,
        pairs_for_model=pairs_for_model,
        settings_for_model=lambda name: ModelSettings(
            head=params.model.head,
            base_model=name,
            hangul_only=params.preprocess.hangul_only,
            prefix=params.model.prefix,
            threshold=params.evaluate.threshold,  # the one place evaluate.threshold enters a model
        ),
        resolve=lambda name: str(BASE_DIR) if name == params.model.name else resolve_model_source(name),
        trials_dir=STUDIES_DIR / study_name,
        run_tags=tags,
        parent_run_id="",
        nli=nli_triplets(params),
    )


def connect_study(params: Params, root: Path, worker_index: int = 0) -> StudyHandles:
    """Connect to the MLflow experiment and the Optuna study (created on first use) with this worker's sampler."""
    import mlflow

    from pipeline.tracking import ensure_experiment, mlflow_tracking_uri, optuna_storage_url

    study_name, tags = study_name_and_tags(params, root)
    mlflow.set_tracking_uri(mlflow_tracking_uri(params.mlflow.tracking_uri, root))
    experiment_id = ensure_experiment(params.mlflow.experiment, root)
    study = storage.open_study(params.study, study_name, optuna_storage_url(params.study.storage, root), worker_index)
    return StudyHandles(study, study_context(params, study_name, tags), experiment_id, tags)


def run_worker(params: Params, worker_index: int, parent_run_id: str | None, n_trials: int | None) -> None:
    """One extra worker: runs its share of the study's trials under the study's parent run, then exits.

    Workers on other hosts run the same command with OPTUNA_STORAGE and MLFLOW_TRACKING_URI pointing at the
    shared stores (and the repository's studies/ folder on a shared path); the parent run is found by tag
    when not given.
    """
    handles = connect_study(params, Path.cwd(), worker_index)
    parent_run_id = parent_run_id or storage.find_parent_run(handles.experiment_id, handles.study.study_name)
    if not parent_run_id:
        raise PipelineError(f"study {handles.study.study_name}: no parent run yet; start the train stage first")
    handles.context.parent_run_id = parent_run_id
    if not TrialBudget.of(handles.study, params.study.n_trials).complete:
        run_trials(handles.study, handles.context, n_trials)


def run_missing_trials(handles: StudyHandles, params: Params, worker_command: Sequence[str]) -> None:
    """The trials the budget still misses: shared with local workers, then any that died are retried here."""
    study, context = handles.study, handles.context
    budget = TrialBudget.of(study, params.study.n_trials, params.study.workers)
    name, run = study.study_name, context.parent_run_id
    print(f"train: study {name}: {budget.finished} of {budget.target} trials finished; MLflow run {run}")
    if budget.complete:
        print(f"train: reusing its finished trials, no training: same identity ({IDENTITY_COVERS})")
        return
    if budget.finished:
        print(f"train: resuming: same identity ({IDENTITY_COVERS}); {budget.target - budget.finished} trial(s) to run")
    else:
        print(f"train: a new study (no stored study has this identity: {IDENTITY_COVERS}); {params.study.workers} worker(s)")
    quotas = [budget.quota(index) for index in range(budget.worker_count)]
    workers = start_workers(worker_command, quotas, context.parent_run_id)
    run_trials(study, context, quotas[0])
    exit_codes = [worker.wait() for worker in workers]
    if any(exit_codes):
        print(f"train: worker exit codes {exit_codes}; this process finishes the study")
    storage.retry_trials_of_dead_workers(study, params.study.heartbeat_seconds)
    if not TrialBudget.of(study, params.study.n_trials).complete:  # a worker died or trials failed
        run_trials(study, context, None)


def run_study(params: Params, worker_command: Sequence[str]) -> tuple[StudyHandles, Any, ShippedModel]:
    """Run the study's missing trials under its MLflow parent run, then the refit of the best trial (when
    refit.enabled); returns the handles, the best trial and the model to ship."""
    import mlflow

    from pipeline.tracking import STUDY_SPLITS, log_split_datasets

    handles = connect_study(params, Path.cwd())
    study = handles.study
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(baseline_trial_params(params.train, params.study.search, params.model.name))
    parent_run_id = storage.find_parent_run(handles.experiment_id, study.study_name)
    with mlflow.start_run(
        run_id=parent_run_id,
        experiment_id=handles.experiment_id,
        run_name=study.study_name,
        tags=None if parent_run_id else {**handles.tags, storage.STUDY_ROLE_TAG: "study"},
    ) as parent:
        handles.context.parent_run_id = parent.info.run_id
        log_split_datasets(Path.cwd(), STUDY_SPLITS)  # the study's row in the runs table shows its data too
        run_missing_trials(handles, params, worker_command)
        for run_id in storage.close_orphaned_runs(study):
            print(f"train: closed MLflow run {run_id} of a trial whose process died (retried with the same params)")
        best = pick_best_trial(study.get_trials(), params.study.objective, params.study.f1_tolerance)
        if best is None:
            raise PipelineError(f"study {study.study_name}: no trial completed (see the failed runs in MLflow)")
        refit = train_refit(handles.context, best, params.refit) if params.refit.enabled else None
        shipped = shipped_model(best, refit, handles.context.trials_dir)
        reports.log_study_summary(study, best, shipped)
    return handles, best, shipped
