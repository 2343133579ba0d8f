"""The Optuna study: each trial one `finetune` run and one MLflow run nested under the study's parent run.

Storage is persistent (SQLite by default): a killed train stage resumes the same study, keeps every
finished trial, and retries a trial whose worker died (heartbeat + RetryHeartbeatStaleTrialCallback).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import distributed
from pipeline.config import ModelParams, SearchSpace, StudyParams, TrainParams
from pipeline.errors import PipelineError
from pipeline.finetune import finetune
from pipeline.models import ModelSettings, save_pair_model

STUDY_ROLE_TAG = "korean_sts.role"
STUDY_NAME_TAG = "optuna.study_name"
STATE_TAG = "optuna.state"
TRIAL_DIR_PREFIX = "trial-"
WORKER_SEED_STRIDE = 7919
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TrialSetup:
    """What one trial trains: its TrainParams and the encoder it fine-tunes."""

    train: TrainParams
    model_name: str


def suggest_trial_setup(trial, search: SearchSpace, base: TrainParams, model_name: str) -> TrialSetup:
    """Sample the search space (the seed's: log-uniform lr and weight decay, batch size, epochs, warmup)."""
    train = dataclasses.replace(
        base,
        learning_rate=trial.suggest_float("learning_rate", *search.learning_rate, log=True),
        batch_size=trial.suggest_categorical("batch_size", search.batch_size),
        weight_decay=trial.suggest_float("weight_decay", *search.weight_decay, log=True),
        epochs=trial.suggest_int("epochs", *search.epochs),
        warmup_ratio=trial.suggest_float("warmup_ratio", *search.warmup_ratio),
    )
    if search.model_name:
        model_name = trial.suggest_categorical("model_name", search.model_name)
    return TrialSetup(train=train, model_name=model_name)


def baseline_trial_params(train: TrainParams, search: SearchSpace, model_name: str) -> dict[str, Any]:
    """params.yaml's hand-set `train` values as the study's first trial."""
    values = {
        "learning_rate": train.learning_rate,
        "batch_size": train.batch_size,
        "weight_decay": train.weight_decay,
        "epochs": train.epochs,
        "warmup_ratio": train.warmup_ratio,
    }
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


def open_study(params: StudyParams, name: str, storage_url: str, worker_index: int = 0):
    """Create or load the study in persistent storage, with heartbeats so a dead worker's trial is retried."""
    import optuna

    try:
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


def finished_trial_count(study) -> int:
    """Trials that count towards n_trials: complete and pruned ones (failed ones are retried)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def trial_reporter(trial):
    """A Trainer callback: per-epoch validation metrics to MLflow and to the pruner; prunes when told.

    `trial` is an Optuna trial, or its TorchDistributedTrial wrapper on every rank of a data-parallel trial.
    """
    import mlflow
    import optuna
    from transformers import TrainerCallback

    class TrialReporter(TrainerCallback):
        # Every data-parallel rank calls these; only rank 0 logs, all join report / should_prune (collective).
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and state.is_world_process_zero:
                mlflow.log_metric("train_loss", logs["loss"], step=round(state.epoch or 0))

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            epoch = round(state.epoch)
            values = {key.removeprefix("eval_"): value for key, value in (metrics or {}).items()}
            if state.is_world_process_zero:
                mlflow.log_metrics(
                    {f"val_{key}": values[key] for key in ("loss", "pearson", "spearman", "f1", "mse")}, step=epoch
                )
            trial.report(values["pearson"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"trial {trial.number} pruned after epoch {epoch}")

    return TrialReporter()


@dataclass
class StudyContext:
    """Everything a trial needs that is the same for every trial."""

    params: StudyParams
    base_train: TrainParams
    model: ModelParams  # model.name is the default encoder; study.search.model_name may vary it per trial
    pairs_for_model: Callable[[str], tuple[Any, Any, Any]]  # model name -> (train pairs, validation pairs, tokenizer)
    settings_for_model: Callable[[str], ModelSettings]
    resolve: Callable[[str], str]
    trials_dir: Path
    run_tags: dict[str, str]
    parent_run_id: str
    nli: Any = None  # NLI triplets for multi-task training of the bi head (train.nli_triplets), or None


def trial_setup(trial, context: StudyContext) -> TrialSetup:
    return suggest_trial_setup(trial, context.params.search, context.base_train, context.model.name)


def train_trial(trial, setup: TrialSetup, context: StudyContext):
    """Fine-tune the trial's setup, reporting each epoch to the trial: what every data-parallel rank runs.

    Returns (model, FinetuneResult, tokenizer); the tokenizer is None for the bi head (it saves its own).
    """
    train_pairs, validation_pairs, tokenizer = context.pairs_for_model(setup.model_name)
    model, result = finetune(
        context.resolve(setup.model_name),
        context.model,
        train_pairs,
        validation_pairs,
        tokenizer,
        setup.train,
        callbacks=[trial_reporter(trial)],
        best_metric=context.params.objective,
        quiet=True,
        nli=context.nli,
    )
    return model, result, tokenizer


def follow_trials(context: StudyContext) -> None:
    """A data-parallel follower rank: train every trial rank 0 announces (see pipeline.distributed)."""
    distributed.follow_trials(lambda trial: train_trial(trial, trial_setup(trial, context), context))


def make_objective(context: StudyContext) -> Callable:
    """The Optuna objective: one nested MLflow run around one finetune; saves the trial's model.

    In a data-parallel run this is rank 0's side of the trial; the other ranks run `train_trial` with it.
    """
    import mlflow
    import optuna

    def objective(trial) -> float:
        shared = distributed.shared_trial(trial)
        run = mlflow.start_run(
            run_name=f"trial-{trial.number}",
            nested=True,
            parent_run_id=context.parent_run_id,
            tags={**context.run_tags, "optuna.trial_number": str(trial.number), STATE_TAG: "RUNNING", "worker": WORKER_ID},
        )
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        trial.set_user_attr("worker", WORKER_ID)
        status = "FAILED"
        try:
            setup = trial_setup(shared, context)
            mlflow.log_params(
                {
                    **trial.params,
                    "model_name": setup.model_name,
                    "head": context.model.head,
                    "max_train_pairs": setup.train.max_train_pairs,
                    "nli_triplets": setup.train.nli_triplets,
                    "data_parallel_processes": distributed.world_size(),
                }
            )
            model, result, tokenizer = train_trial(shared, setup, context)
            validation = {key: result.best_metrics[key] for key in ("loss", "pearson", "spearman", "f1", "mse")}
            trial.set_user_attr("validation", validation)
            trial.set_user_attr("train_seconds", round(result.train_seconds, 1))
            trial.set_user_attr("history", result.history)
            mlflow.log_metrics({f"best_val_{key}": value for key, value in validation.items()})
            mlflow.log_metrics(
                {"train_seconds": result.train_seconds, "train_steps": result.train_steps, "train_pairs": result.train_pairs}
            )
            save_pair_model(
                model,
                tokenizer,
                context.settings_for_model(setup.model_name),
                context.trials_dir / f"{TRIAL_DIR_PREFIX}{trial.number}",
            )
            mlflow.set_tag(STATE_TAG, "COMPLETE")
            status = "FINISHED"
            value = validation[context.params.objective]
            print(f"trial {trial.number}: {context.params.objective} {value:.4f}  {trial.params}", flush=True)
            return value
        except optuna.TrialPruned:
            mlflow.set_tag(STATE_TAG, "PRUNED")
            status = "KILLED"
            print(f"trial {trial.number}: pruned  {trial.params}", flush=True)
            raise
        except Exception:
            mlflow.set_tag(STATE_TAG, "FAIL")
            raise
        finally:
            mlflow.end_run(status=status)

    return objective


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
    """A study callback: stop once n_trials are finished (complete or pruned), or too many trials failed.

    Counting in storage (not in this process) is what lets a resumed or parallel study stop at the total.
    """
    import optuna

    def callback(study, _trial) -> None:
        if (
            finished_trial_count(study) >= n_trials
            or len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))) > max_failures
        ):
            study.stop()

    return callback


def study_callbacks(params: StudyParams, trials_dir: Path) -> list[Callable]:
    return [
        keep_only_best_model(trials_dir, params.objective, params.f1_tolerance),
        retry_failed_trials(params.max_retries),
        stop_after(params.n_trials, max_failures=(params.max_retries + 1) * params.n_trials),
    ]


def worker_share(missing: int, workers: int, worker_index: int) -> int:
    """Worker worker_index's part of `missing` trials split over `workers`: together exactly `missing`."""
    return missing // workers + (1 if worker_index < missing % workers else 0)


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


def retry_trials_of_dead_workers(study, heartbeat_seconds: int) -> None:
    """After every local worker has exited, trials still RUNNING belong to dead workers: fail and retry them.

    Waits out the heartbeat grace period first, so Optuna's own stale-trial check takes them.
    """
    import time

    import optuna

    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        time.sleep(heartbeat_seconds * 3 + 1)
        optuna.storages.fail_stale_trials(study)


def trial_state_counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


def study_train_seconds(study) -> float:
    """Training time summed over the trials that recorded it (complete ones)."""
    return round(sum(trial.user_attrs.get("train_seconds", 0.0) for trial in study.get_trials(deepcopy=False)), 1)


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


def log_study_summary(study, best) -> None:
    """On the (active) parent run: best value and params, and Optuna's plots as artifacts."""
    import mlflow
    import optuna

    mlflow.set_tags({"best_trial": str(best.number), "best_run_id": best.user_attrs.get("mlflow_run_id", "")})
    mlflow.log_metric("best_value", best.value)
    mlflow.log_metrics({f"best_val_{key}": value for key, value in best.user_attrs["validation"].items()})
    mlflow.log_dict({"number": best.number, "params": best.params, "value": best.value}, "best_trial.json")
    mlflow.log_dict({"trials": trials_table(study)}, "trials.json")
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    mlflow.log_figure(plot_optimization_history(study).figure, "plots/optimization_history.png")
    if len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) >= 2:
        try:
            mlflow.log_figure(plot_param_importances(study).figure, "plots/param_importances.png")
        except (ValueError, RuntimeError) as error:  # importances need varied params among complete trials
            mlflow.set_tag("plots.param_importances_skipped", str(error)[:250])


def write_study_report(path: Path, study, best, parent_run_id: str) -> None:
    """The study for humans and for the register stage: the winner, its MLflow run, every trial."""
    from pipeline.tables import write_json

    write_json(
        path,
        {
            "study_name": study.study_name,
            "parent_run_id": parent_run_id,
            "best_trial": best.number,
            "best_run_id": best.user_attrs.get("mlflow_run_id"),
            "best_params": best.params,
            "best_value": best.value,
            "validation": best.user_attrs.get("validation"),
            "trials": trials_table(study),
        },
    )
