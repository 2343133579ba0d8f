"""Stage train: an Optuna study over fine-tuning runs, tracked in MLflow; the best trial's model is the output.

params.yaml's `train` values are the study's first trial (the hand-set baseline); the sampler explores
`study.search` from there. One MLflow parent run per study, one nested run per trial.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.config import Params, load_params
from pipeline.errors import PipelineError, run_stage
from pipeline.models import ModelSettings, load_tokenizer, replace_folder, resolve_model_source
from pipeline.paths import BASE_DIR
from pipeline.tables import read_jsonl, split_path, write_json

CLEAN_DIR = Path("data/clean")
TOKENIZED_DIR = Path("data/tokenized")
MODEL_DIR = Path("models/model")
STUDIES_DIR = Path("studies")
METRICS = Path("reports/train_metrics.json")
HISTORY = Path("reports/train_history.json")
STUDY_REPORT = Path("reports/study.json")


def study_config_hash(params: Params) -> str:
    """The hash of every param that changes what a trial computes: a new hash starts a new study."""
    from pipeline.tracking import params_hash

    relevant = {
        "model": dataclasses.asdict(params.model),
        "train": {k: v for k, v in dataclasses.asdict(params.train).items() if k != "calibration"},  # fitted after the study
        "study": {
            k: v
            for k, v in dataclasses.asdict(params.study).items()
            if k not in ("n_trials", "timeout_seconds", "storage", "workers")
        },
        "hangul_only": params.preprocess.hangul_only,
    }
    return params_hash(relevant)


class PairsByModel:
    """Training pairs per model name: (train, validation, tokenizer).

    cross and mlp heads: tokenized pairs, the tokenize stage's output for model.name, encoded here for
    other names. bi head: the clean text rows (sentence-transformers tokenizes each sentence itself).
    """

    def __init__(self, params: Params) -> None:
        import datasets

        self.params = params
        self.cache = {}
        if params.model.head == "bi":
            self.text = tuple(datasets.Dataset.from_json(str(split_path(CLEAN_DIR, split))) for split in ("train", "validation"))
        else:
            self.cache[params.model.name] = self._from_tokenize_stage(datasets)

    @staticmethod
    def _from_tokenize_stage(datasets):
        pairs = datasets.load_from_disk(str(TOKENIZED_DIR / "pairs"))
        return pairs["train"], pairs["validation"], load_tokenizer(str(TOKENIZED_DIR / "tokenizer"))

    def __call__(self, model_name: str):
        if self.params.model.head == "bi":
            return (*self.text, None)
        if model_name not in self.cache:
            import datasets

            from pipeline.tokenize import encode_pairs

            tokenizer = load_tokenizer(resolve_model_source(model_name), self.params.model.lowercase)
            tokenizer.model_max_length = self.params.model.max_length
            encoded = [
                encode_pairs(
                    datasets.Dataset.from_json(str(split_path(CLEAN_DIR, split))),
                    tokenizer,
                    self.params.model.max_length,
                    self.params.model.prefix,
                )
                for split in ("train", "validation")
            ]
            self.cache[model_name] = (*encoded, tokenizer)
        return self.cache[model_name]


def nli_triplets(wanted: int | None):
    """The clean NLI triplets as a Dataset when train.nli_triplets asks for any (finetune takes the subset), else None."""
    if wanted == 0:
        return None
    import datasets

    from pipeline.nli import NLI

    return datasets.Dataset.from_json(str(split_path(CLEAN_DIR, NLI)))


def study_name_and_tags(params: Params, root: Path) -> tuple[str, dict[str, str]]:
    """The stored study's name (<study.name>-<config hash>) and the tags of its MLflow runs."""
    from pipeline import study as studies
    from pipeline.tracking import git_commit

    config_hash = study_config_hash(params)
    study_name = f"{params.study.name}-{config_hash}"
    return study_name, {studies.STUDY_NAME_TAG: study_name, "git_commit": git_commit(root), "dvc_params_hash": config_hash}


def study_context(params: Params, study_name: str, tags: dict[str, str]):
    """What every trial needs (the parent run id is filled in once the parent run exists)."""
    from pipeline import study as studies

    return studies.StudyContext(
        params=params.study,
        base_train=params.train,
        model=params.model,
        pairs_for_model=PairsByModel(params),
        settings_for_model=lambda name: ModelSettings(
            head=params.model.head, base_model=name, hangul_only=params.preprocess.hangul_only, prefix=params.model.prefix
        ),
        resolve=lambda name: str(BASE_DIR) if name == params.model.name else resolve_model_source(name),
        trials_dir=STUDIES_DIR / study_name,
        run_tags=tags,
        parent_run_id="",
        nli=nli_triplets(params.train.nli_triplets),
    )


@dataclasses.dataclass
class StudyHandles:
    """The study, the trial context and the MLflow experiment, as every worker sees them."""

    study: Any
    context: Any
    experiment_id: str
    tags: dict[str, str]


def connect_study(params: Params, root: Path, worker_index: int = 0) -> StudyHandles:
    """Connect to the MLflow experiment and the Optuna study (created on first use) with this worker's sampler."""
    import mlflow

    from pipeline import study as studies
    from pipeline.tracking import ensure_experiment, mlflow_tracking_uri, optuna_storage_url

    study_name, tags = study_name_and_tags(params, root)
    mlflow.set_tracking_uri(mlflow_tracking_uri(params.mlflow.tracking_uri, root))
    experiment_id = ensure_experiment(params.mlflow.experiment, root)
    study = studies.open_study(params.study, study_name, optuna_storage_url(params.study.storage, root), worker_index)
    return StudyHandles(study, study_context(params, study_name, tags), experiment_id, tags)


def worker_environment(index: int, gpu_count: int, workers: int, cpu_threads: int, environ: dict[str, str]) -> dict[str, str]:
    """Local worker index's environment: on a multi-GPU runner its slice of the GPUs (unless the user chose);
    on CPU its share of the cores (workers each taking every core measured 0.57x of one worker).

    Inside a torchrun rank, the launcher's variables are dropped (the worker launches its own ranks) and the
    inherited OMP_NUM_THREADS is the rank's share, not the user's, so it is replaced.
    """
    from pipeline import distributed

    environment = distributed.without_launcher_variables(environ)
    if gpu_count > 1:
        environment.setdefault("CUDA_VISIBLE_DEVICES", ",".join(map(str, distributed.worker_gpus(index, gpu_count, workers))))
    if gpu_count == 0 and (distributed.launched(environ) or "OMP_NUM_THREADS" not in environment):
        environment["OMP_NUM_THREADS"] = str(cpu_threads)
    return environment


def cpu_threads_per_worker(workers: int) -> int:
    import os

    return max(1, (os.cpu_count() or 1) // workers)


def start_workers(missing: int, workers: int, parent_run_id: str) -> list:
    """Extra local worker processes 1..workers-1 on the same storage, each with its share of `missing` trials."""
    import os
    import subprocess

    import torch

    from pipeline.study import worker_share

    gpus = torch.cuda.device_count()
    threads = cpu_threads_per_worker(workers)
    if gpus == 0 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads)  # this process is worker 0
    command = [sys.executable, "-m", "pipeline.train", "--parent-run-id", parent_run_id]
    return [
        subprocess.Popen(
            [*command, "--worker", str(index), "--trials", str(worker_share(missing, workers, index))],
            cwd=Path.cwd(),
            env=worker_environment(index, gpus, workers, threads, dict(os.environ)),
        )
        for index in range(1, workers)
    ]


def run_worker(params: Params, worker_index: int, parent_run_id: str | None, n_trials: int | None) -> None:
    """One extra worker: runs its share of the study's trials under the study's parent run, then exits.

    Workers on other hosts run the same command with OPTUNA_STORAGE and MLFLOW_TRACKING_URI pointing at the
    shared stores (and the repository's studies/ folder on a shared path); the parent run is found by tag
    when not given.
    """
    from pipeline import study as studies

    handles = connect_study(params, Path.cwd(), worker_index)
    parent_run_id = parent_run_id or studies.find_parent_run(handles.experiment_id, handles.study.study_name)
    if not parent_run_id:
        raise PipelineError(f"study {handles.study.study_name}: no parent run yet; start the train stage first")
    handles.context.parent_run_id = parent_run_id
    if studies.finished_trial_count(handles.study) < params.study.n_trials:
        studies.run_trials(handles.study, handles.context, n_trials)


def run_study(params: Params) -> None:
    """The stage: run the study's missing trials (with any extra workers), then write the best model and reports."""
    import mlflow

    from pipeline import study as studies

    handles = connect_study(params, Path.cwd())
    study, context = handles.study, handles.context
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(studies.baseline_trial_params(params.train, params.study.search, params.model.name))
    parent_run_id = studies.find_parent_run(handles.experiment_id, study.study_name)
    with mlflow.start_run(
        run_id=parent_run_id,
        experiment_id=handles.experiment_id,
        run_name=study.study_name,
        tags=None if parent_run_id else {**handles.tags, studies.STUDY_ROLE_TAG: "study"},
    ) as parent:
        context.parent_run_id = parent.info.run_id
        finished = studies.finished_trial_count(study)
        print(
            f"train: study {study.study_name}: {finished} of {params.study.n_trials} trials finished; "
            f"MLflow run {parent.info.run_id}; {params.study.workers} worker(s)"
        )
        missing = params.study.n_trials - finished
        if missing > 0:
            worker_count = min(params.study.workers, missing)
            workers = start_workers(missing, worker_count, context.parent_run_id)
            studies.run_trials(study, context, studies.worker_share(missing, worker_count, 0))
            exit_codes = [worker.wait() for worker in workers]
            if any(exit_codes):
                print(f"train: worker exit codes {exit_codes}; this process finishes the study")
            studies.retry_trials_of_dead_workers(study, params.study.heartbeat_seconds)
            if studies.finished_trial_count(study) < params.study.n_trials:  # a worker died or trials failed
                studies.run_trials(study, context, None)
        for run_id in studies.close_orphaned_runs(study):
            print(f"train: closed MLflow run {run_id} of a trial whose process died (retried with the same params)")
        best = studies.pick_best_trial(study.get_trials(), params.study.objective, params.study.f1_tolerance)
        if best is None:
            raise PipelineError(f"study {study.study_name}: no trial completed (see the failed runs in MLflow)")
        studies.log_study_summary(study, best)
    best_folder = context.trials_dir / f"{studies.TRIAL_DIR_PREFIX}{best.number}"
    if not (best_folder / "model.safetensors").is_file():
        raise PipelineError(f"study {study.study_name}: best trial {best.number} has no saved model at {best_folder}")
    calibration = install_model(best_folder, MODEL_DIR, params.train.calibration, params.train.seed)
    write_json(HISTORY, best.user_attrs.get("history", []))
    write_json(
        METRICS,
        {
            "validation": best.user_attrs["validation"],
            "best_trial": best.number,
            "trials": studies.trial_state_counts(study),
            "train_seconds": {"best_trial": best.user_attrs.get("train_seconds"), "study": studies.study_train_seconds(study)},
            "calibration": {"applied": calibration.applied, "reason": calibration.reason, **calibration.validation},
        },
    )
    studies.write_study_report(STUDY_REPORT, study, best, context.parent_run_id)
    print(f"train: best trial {best.number} {best.params}: validation {best.user_attrs['validation']} -> {MODEL_DIR}")


def install_model(trial_folder: Path, target: Path, choice: str, seed: int):
    """Copy the best trial's model into place with its score calibration fitted on the validation split.

    The map is fitted on the model's raw scores through the one scoring path (pipeline.scoring), so what it
    corrects is exactly what evaluate and the service compute.
    """
    import shutil

    import numpy as np

    from pipeline.calibration import calibrate
    from pipeline.scoring import PairScorer

    records = read_jsonl(split_path(CLEAN_DIR, "validation"))
    result = {}

    def fill(staging: Path) -> None:
        shutil.copytree(trial_folder, staging)
        scorer = PairScorer.from_folder(staging)
        raw = scorer.raw_scores([(r["sentence1"], r["sentence2"]) for r in records])
        result["calibration"] = calibrate(raw, np.array([r["score"] for r in records], dtype=np.float64), choice, seed)
        result["calibration"].save(staging)

    replace_folder(target, fill)
    print(f"train: calibration {'applied' if result['calibration'].applied else 'not applied'} ({result['calibration'].reason})")
    return result["calibration"]


def main(argv: Sequence[str] = ()) -> None:
    import argparse
    import os

    import optuna
    import torch

    from pipeline import distributed
    from pipeline import study as studies

    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__)
    parser.add_argument("--worker", type=int, metavar="INDEX", help="run as extra worker INDEX (1..): trials only")
    parser.add_argument("--parent-run-id", help="the study's MLflow parent run (found by tag when omitted)")
    parser.add_argument("--trials", type=int, help="worker: trials to run (default: until the study has study.n_trials)")
    args = parser.parse_args(list(argv))
    params = load_params()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # An extra worker (here or on another host) trains on every GPU it is given; the stage shares its GPUs.
    sharing = 1 if args.worker is not None else params.study.workers
    processes = distributed.processes_per_trial(params.train.data_parallel, torch.cuda.device_count(), sharing)
    if processes > 1 and not distributed.launched():
        distributed.relaunch(processes, argv, int(os.environ.get("OMP_NUM_THREADS") or cpu_threads_per_worker(sharing)))
        return
    if distributed.launched():
        distributed.start()
    try:
        if not distributed.is_leader():
            study_name, tags = study_name_and_tags(params, Path.cwd())
            studies.follow_trials(study_context(params, study_name, tags))
        elif args.worker is not None:
            run_worker(params, args.worker, args.parent_run_id, args.trials)
        else:
            run_study(params)
    finally:
        distributed.release_followers()
        distributed.stop()


if __name__ == "__main__":
    run_stage(lambda: main(sys.argv[1:]))
