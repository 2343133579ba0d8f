"""The Optuna objective: each trial one `finetune` run and one MLflow run nested under the study's parent run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import distributed
from pipeline.charts import history_chart, render_png
from pipeline.finetune import FinetuneResult, finetune
from pipeline.heads import TrainingPairs, save_pair_model
from pipeline.models import ModelSettings
from pipeline.paths import TRIAL_DIR_PREFIX
from pipeline.study.space import TrialSetup, suggest_trial_setup
from pipeline.study.storage import STATE_TAG, WORKER_ID
from pipeline.tracking import STUDY_SPLITS, log_png, log_split_datasets

if TYPE_CHECKING:
    from pipeline.config import ModelParams, StudyParams, TrainParams

VALIDATION_KEYS = ("loss", "pearson", "spearman", "f1", "mse")


@dataclass
class StudyContext:
    """Everything a trial needs that is the same for every trial."""

    params: StudyParams
    base_train: TrainParams
    model: ModelParams  # model.name is the default encoder; study.search.model_name may vary it per trial
    pairs_for_model: Callable[[str], TrainingPairs]  # model name -> the head's training pairs
    settings_for_model: Callable[[str], ModelSettings]
    resolve: Callable[[str], str]  # model name -> what from_pretrained takes
    trials_dir: Path
    run_tags: dict[str, str]
    parent_run_id: str
    nli: Any = None  # NLI triplets for multi-task training (train.nli_triplets), or None


def trial_reporter(trial):
    """A Trainer callback: per-epoch validation metrics to MLflow and to the pruner; prunes when told.

    `trial` is an Optuna trial, or its TorchDistributedTrial wrapper on every rank of a data-parallel trial;
    None for the refit (pipeline.study.refit), which is logged but never pruned.
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
                mlflow.log_metrics({f"val_{key}": values[key] for key in VALIDATION_KEYS}, step=epoch)
            if trial is None:
                return
            trial.report(values["pearson"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"trial {trial.number} pruned after epoch {epoch}")

    return TrialReporter()


def trial_setup(trial, context: StudyContext) -> TrialSetup:
    return suggest_trial_setup(trial, context.params.search, context.base_train, context.model.name)


def train_trial(trial, setup: TrialSetup, context: StudyContext):
    """Fine-tune the trial's setup, reporting each epoch to the trial (None: the refit): what every data-parallel
    rank runs. Returns (model, FinetuneResult, tokenizer); the tokenizer is None when the model saves its own.
    """
    pairs = context.pairs_for_model(setup.model_name)
    model, result = finetune(
        context.resolve(setup.model_name),
        context.model,
        pairs,
        setup.train,
        context.settings_for_model(setup.model_name).threshold,  # validated at the threshold the model is saved with
        callbacks=[trial_reporter(trial)],
        best_metric=context.params.objective,
        quiet=True,
        nli=context.nli,
    )
    return model, result, pairs.tokenizer


def follow_trials(context: StudyContext) -> None:
    """A data-parallel follower rank: train every trial (and the refit) rank 0 announces (see pipeline.distributed)."""
    distributed.follow_trials(
        lambda trial: train_trial(trial, trial_setup(trial, context), context),
        lambda setup: train_trial(None, setup, context),
    )


def log_result(result: FinetuneResult) -> dict[str, float]:
    """A run's best validation figures, cost and validation chart on the active MLflow run; returns the figures."""
    import mlflow

    validation = {key: result.best_metrics[key] for key in VALIDATION_KEYS}
    mlflow.log_metrics({f"best_val_{key}": value for key, value in validation.items()})
    mlflow.log_metrics(
        {
            "train_seconds": result.train_seconds,
            "train_steps": result.train_steps,
            "train_pairs": result.train_pairs,
            "train_nli_triplets": result.nli_triplets,
        }
    )
    log_png(render_png(history_chart(result.history)), "plots/validation_history.png")  # about 0.15 s (1 s the first)
    return validation


def record_result(trial, result: FinetuneResult) -> dict[str, float]:
    """The trial's validation figures, history and cost on the Optuna trial and its MLflow run."""
    validation = log_result(result)
    trial.set_user_attr("validation", validation)
    trial.set_user_attr("train_seconds", round(result.train_seconds, 1))
    trial.set_user_attr("history", result.history)
    trial.set_user_attr("train_pairs", result.train_pairs)
    trial.set_user_attr("nli_triplets", result.nli_triplets)
    return validation


def log_setup(params: dict[str, Any], setup: TrialSetup, context: StudyContext) -> None:
    """The run's params (the sampled ones plus what else it trained with) and its data, on the active MLflow run."""
    import mlflow

    mlflow.log_params(
        {
            **params,
            "model_name": setup.model_name,
            "head": context.model.head,
            "loss": setup.train.loss,
            "max_train_pairs": setup.train.max_train_pairs,
            "nli_triplets": setup.train.nli_triplets,
            "data_parallel_processes": distributed.world_size(),
        }
    )
    log_split_datasets(Path.cwd(), STUDY_SPLITS)  # the runs table's Dataset column


def run_trial(trial, shared, context: StudyContext) -> float:
    """Inside the trial's MLflow run: log its params, train, record, save its model; returns the objective."""
    setup = trial_setup(shared, context)
    log_setup(trial.params, setup, context)
    model, result, tokenizer = train_trial(shared, setup, context)
    validation = record_result(trial, result)
    folder = context.trials_dir / f"{TRIAL_DIR_PREFIX}{trial.number}"
    save_pair_model(model, tokenizer, context.settings_for_model(setup.model_name), folder)
    return validation[context.params.objective]


def make_objective(context: StudyContext) -> Callable:
    """The Optuna objective: one nested MLflow run around one trial, its end state tagged.

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
            value = run_trial(trial, shared, context)
            mlflow.set_tag(STATE_TAG, "COMPLETE")
            status = "FINISHED"
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
