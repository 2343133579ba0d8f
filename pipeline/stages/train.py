"""Stage train: an Optuna study over fine-tuning runs, tracked in MLflow, then the refit of its winner on the
`refit` budget; the refit's model (or, with refit.enabled false, the best trial's) is the output.

The study itself is pipeline.study (one MLflow parent run per study, one nested run per trial and one for the
refit). This stage runs it, installs the shipped model with its calibration into models/model, and writes the
reports.

    python -m pipeline.stages.train                       the stage (dvc repro)
    python -m pipeline.stages.train --worker N            one more trial worker for the running study
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Params, load_params
from pipeline.errors import PipelineError, run_stage
from pipeline.models import ModelSettings
from pipeline.paths import CLEAN_DIR, MODEL_DIR, STUDY_REPORT, TRAIN_HISTORY, TRAIN_METRICS
from pipeline.swap import replace_folder
from pipeline.tables import read_jsonl, split_path, write_json

MODULE = "pipeline.stages.train"  # how workers and data-parallel ranks start this stage again


def install_model(trial_folder: Path, target: Path, choice: str, seed: int):
    """Copy the best trial's model into place with its score calibration fitted on the validation split.

    The map is fitted on the model's raw scores through the one scoring path (pipeline.scoring), so what it
    corrects is exactly what evaluate and the service compute; `auto` judges it at the model's own threshold.
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
        gold = np.array([r["score"] for r in records], dtype=np.float64)
        result["calibration"] = calibrate(raw, gold, choice, scorer.settings.threshold, seed)
        result["calibration"].save(staging)

    replace_folder(target, fill)
    print(f"train: calibration {'applied' if result['calibration'].applied else 'not applied'} ({result['calibration'].reason})")
    return result["calibration"]


def train_stage(params: Params) -> None:
    """Run the study's missing trials and the refit, then install the shipped model and write the reports."""
    from pipeline.study import reports
    from pipeline.study.runner import run_study
    from pipeline.study.workers import stage_command

    handles, best, shipped = run_study(params, stage_command(MODULE))
    study = handles.study
    if not (shipped.folder / "model.safetensors").is_file():
        raise PipelineError(
            f"study {study.study_name}: the {shipped.description} has no saved model at {shipped.folder} (models are "
            "kept under studies/; to train again, delete the study or change study.name)"
        )
    trained_at = ModelSettings.load(shipped.folder).threshold
    if trained_at != params.evaluate.threshold:  # a reused study whose name does not cover the threshold
        raise PipelineError(
            f"study {study.study_name}: its trials were validated at threshold {trained_at} but evaluate.threshold is "
            f"{params.evaluate.threshold}: dvc.yaml's train stage must list evaluate.threshold (it names the study)"
        )
    calibration = install_model(shipped.folder, MODEL_DIR, params.train.calibration, params.train.seed)
    write_json(TRAIN_HISTORY, shipped.history)
    metrics = reports.study_metrics(study, best, shipped, calibration)
    write_json(TRAIN_METRICS, metrics)
    reports.write_study_report(STUDY_REPORT, study, best, shipped, handles.context.parent_run_id)
    print(f"train: {shipped.description} {best.params}: validation {metrics['validation']} -> {MODEL_DIR}")


def main(argv: Sequence[str] = ()) -> None:
    import argparse
    import os

    import optuna
    import torch

    from pipeline import distributed
    from pipeline.study.objective import follow_trials
    from pipeline.study.runner import run_worker, study_context, study_name_and_tags
    from pipeline.study.workers import cpu_threads_per_worker

    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
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
        threads = int(os.environ.get("OMP_NUM_THREADS") or cpu_threads_per_worker(sharing))
        distributed.relaunch(processes, MODULE, argv, threads)
        return
    if distributed.launched():
        distributed.start()
    try:
        if not distributed.is_leader():
            follow_trials(study_context(params, *study_name_and_tags(params, Path.cwd())))
        elif args.worker is not None:
            run_worker(params, args.worker, args.parent_run_id, args.trials)
        else:
            train_stage(params)
    finally:
        distributed.release_followers()
        distributed.stop()


if __name__ == "__main__":
    run_stage(lambda: main(sys.argv[1:]))
