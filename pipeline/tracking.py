"""Adapters to the experiment stores: where MLflow and Optuna keep their state, and clear errors when broken."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.digests import json_digest
from pipeline.errors import PipelineError
from pipeline.paths import MLFLOW_ARTIFACTS, MLFLOW_DB, OPTUNA_DB


class StoreError(PipelineError):
    """An MLflow or Optuna store that is missing, unreadable or not a database."""


def sqlite_path(url: str) -> Path | None:
    """The file behind a sqlite:/// URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    return Path(url.removeprefix("sqlite:///"))


def check_sqlite_store(url: str, what: str) -> None:
    """Fail clearly when a SQLite store exists but is not a SQLite database (rather than deep in SQLAlchemy)."""
    path = sqlite_path(url)
    if path is None or not path.exists():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            connection.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{what} at {path} is not a readable SQLite database ({error}); move it away to start afresh") from error


def mlflow_tracking_uri(configured: str | None, root: Path) -> str:
    """MLFLOW_TRACKING_URI, else params, else an absolute SQLite file in the repository."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured or f"sqlite:///{(root / MLFLOW_DB).resolve()}"
    check_sqlite_store(uri, "MLflow tracking store")
    return uri


def optuna_storage_url(configured: str | None, root: Path) -> str:
    """OPTUNA_STORAGE, else params, else an absolute SQLite file in the repository."""
    url = os.environ.get("OPTUNA_STORAGE") or configured or f"sqlite:///{(root / OPTUNA_DB).resolve()}"
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    check_sqlite_store(url, "Optuna storage")
    return url


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# The experiment's declared kind: MLflow 3 UIs without it may open it as GenAI (an empty traces overview). MLflow
# 3.17.2's UI picks the view from its sidebar switch instead: pipeline/mlflow_ui.py prints a link that sets it.
EXPERIMENT_KIND = "custom_model_development"


def ensure_experiment(name: str, root: Path) -> str:
    """Create or find the experiment, marked as model training for the MLflow UI, and make it active.

    Against a store (SQLite, PostgreSQL) the experiment gets an explicit artifact location, never ./mlruns;
    a tracking server (http[s]://) keeps its own artifact store, shared by every worker.
    """
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        on_server = mlflow.get_tracking_uri().startswith(("http://", "https://"))
        location = None if on_server else (root / MLFLOW_ARTIFACTS).resolve().as_uri()
        experiment_id = mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    else:
        experiment_id = experiment.experiment_id
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made before this tag, or by an older MLflow
            mlflow.MlflowClient().set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    mlflow.set_experiment(experiment_id=experiment_id)  # nested runs inherit the active experiment, not the parent's
    return experiment_id


SPLIT_CONTEXTS = {"train": "training", "validation": "validation", "test": "testing"}  # MLflow's input context tag
STUDY_SPLITS = ("train", "validation")  # what a study reads (its trials and parent run); test is the register stage's


def split_datasets(root: Path, splits: Sequence[str] = tuple(SPLIT_CONTEXTS)) -> list[tuple[Any, str]]:
    """The clean splits as MLflow datasets with their contexts: name = split, digest = the file's MD5 as DVC records
    it, source = its path as dvc.lock names it. Metadata only (a MetaDataset): nothing is loaded."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    from pipeline.digests import file_digest
    from pipeline.paths import CLEAN_DIR
    from pipeline.tables import split_path

    datasets = []
    for split in splits:
        path = split_path(CLEAN_DIR, split)
        dataset = MetaDataset(LocalArtifactDatasetSource(path.as_posix()), name=split, digest=file_digest(root / path, "md5"))
        datasets.append((dataset, SPLIT_CONTEXTS[split]))
    return datasets


def log_split_datasets(root: Path, splits: Sequence[str] = tuple(SPLIT_CONTEXTS)) -> None:
    """Log the clean splits as the active run's inputs (the runs table's Dataset column); logging again is a no-op."""
    import mlflow

    datasets = split_datasets(root, splits)
    mlflow.log_inputs(
        datasets=[dataset for dataset, _ in datasets],
        contexts=[context for _, context in datasets],
        tags_list=[None] * len(datasets),
    )


def log_png(png: bytes, artifact_file: str) -> None:
    """PNG bytes as an artifact of the active run (the MLflow UI shows it as an image)."""
    import tempfile

    import mlflow

    folder_in_run, _, name = artifact_file.rpartition("/")
    with tempfile.TemporaryDirectory(prefix="png-") as folder:
        (Path(folder) / name).write_bytes(png)
        mlflow.log_artifact(str(Path(folder) / name), artifact_path=folder_in_run or None)


def params_hash(section: Any) -> str:
    """A short stable hash of a params section (what DVC would rerun on), to name studies and tag runs."""
    return json_digest(section)


def lineage_tags(root: Path) -> dict[str, str]:
    """Which data and code made a run: the MD5 of each clean split (what DVC 3 records for a file), the commit,
    a dirty flag."""
    from pipeline.digests import file_digest
    from pipeline.paths import CLEAN_DIR
    from pipeline.tables import SPLITS, split_path

    commit = git_commit(root)
    tags = {f"data.{split}.md5": file_digest(root / split_path(CLEAN_DIR, split), "md5") for split in SPLITS}
    return {**tags, "git.commit": commit.removesuffix("-dirty"), "git.dirty": str(commit.endswith("-dirty")).lower()}


def git_commit(root: Path) -> str:
    """HEAD's commit, with '-dirty' when a tracked file differs; 'unknown' outside git.

    dvc.lock does not count: `dvc repro` rewrites it after every stage, so it always differs mid-run.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if changed else "")
