"""Crash anywhere: SIGKILL a DVC stage's process at a chosen moment of its run, then inspect what it left.

Used by tests/test_pipeline_dvc.py (one seed in the suite, more with `make crash-test`).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

LEFTOVER_PATTERNS = (".*.tmp", "*.partial")  # atomic_write_text's temporary files, replace_folder's staging folders


@dataclass(frozen=True)
class Kill:
    """One attempt: the stage, the planned delay after its process appeared, whether it was still running then."""

    stage: str
    delay_s: float
    killed: bool
    ran_s: float  # from the stage process appearing to its death (or its end, when it finished first)
    dvc_exit: int


def stage_processes(root: psutil.Process, stage: str) -> list[psutil.Process]:
    """The stage's process (`python -m pipeline.stages.<stage>`) under root, with its own children."""
    found = []
    for process in root.children(recursive=True):
        try:
            if f"pipeline.stages.{stage}" in " ".join(process.cmdline()):
                found += [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return found


def kill_stage(command: list[str], cwd: Path, env: dict[str, str], stage: str, delay_s: float, appear_s: float = 600) -> Kill:
    """Run command (a `dvc repro` that runs stage); SIGKILL the stage's processes delay_s after they appear."""
    dvc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = psutil.Process(dvc.pid)
    try:
        deadline = time.monotonic() + appear_s
        while not (processes := stage_processes(root, stage)):
            if dvc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"stage {stage} never started (dvc exited {dvc.returncode})")
            time.sleep(0.02)
        appeared = time.monotonic()
        while time.monotonic() - appeared < delay_s and processes[0].is_running() and processes[0].status() != "zombie":
            time.sleep(0.02)
        killed = False
        if processes[0].is_running() and processes[0].status() != "zombie":
            for process in processes:
                try:
                    process.kill()
                    killed = True
                except psutil.NoSuchProcess:
                    pass
        ran = time.monotonic() - appeared
        return Kill(stage, round(delay_s, 2), killed, round(ran, 2), dvc.wait(timeout=600))
    finally:
        if dvc.poll() is None:
            dvc.kill()
            dvc.wait()


def leftovers(repo: Path) -> list[str]:
    """Temporary files and staging folders anywhere in the work tree (not in .git or DVC's own folder)."""
    found = []
    for pattern in LEFTOVER_PATTERNS:
        found += [str(p.relative_to(repo)) for p in repo.rglob(pattern) if not {".git", ".dvc"} & set(p.relative_to(repo).parts)]
    return sorted(found)


def registry_problems(repo: Path, model_name: str) -> list[str]:
    """Versions whose artifacts cannot be downloaded, and a champion that does not load and score."""
    import tempfile

    import mlflow
    import numpy as np
    from mlflow import MlflowClient

    from pipeline.scoring import PairScorer

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    problems = []
    for version in MlflowClient().search_model_versions(f"name = '{model_name}'"):
        with tempfile.TemporaryDirectory() as folder:
            try:
                mlflow.artifacts.download_artifacts(f"models:/{model_name}/{version.version}", dst_path=folder)
            except Exception as error:  # any failure to fetch is the finding
                problems.append(f"v{version.version}: {type(error).__name__}: {error}")
    try:
        scores = PairScorer.from_registry(f"models:/{model_name}@champion", device="cpu").score([("가 나", "가 나 다")])
        if not (np.isfinite(scores).all() and 0 <= scores[0] <= 5):
            problems.append(f"champion scores {scores}")
    except Exception as error:
        problems.append(f"champion: {type(error).__name__}: {error}")
    return problems


def summary(kills: list[Kill]) -> str:
    return json.dumps([kill.__dict__ for kill in kills])
