"""Local worker processes: extra copies of the train stage that run their share of the study's trials."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline import distributed


def worker_environment(index: int, gpu_count: int, workers: int, cpu_threads: int, environ: dict[str, str]) -> dict[str, str]:
    """Local worker index's environment: on a multi-GPU runner its slice of the GPUs (unless the user chose);
    on CPU its share of the cores (workers each taking every core measured 0.57x of one worker).

    Inside a torchrun rank, the launcher's variables are dropped (the worker launches its own ranks) and the
    inherited OMP_NUM_THREADS is the rank's share, not the user's, so it is replaced.
    """
    environment = distributed.without_launcher_variables(environ)
    if gpu_count > 1:
        environment.setdefault("CUDA_VISIBLE_DEVICES", ",".join(map(str, distributed.worker_gpus(index, gpu_count, workers))))
    if gpu_count == 0 and (distributed.launched(environ) or "OMP_NUM_THREADS" not in environment):
        environment["OMP_NUM_THREADS"] = str(cpu_threads)
    return environment


def cpu_threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def start_workers(command: Sequence[str], quotas: Sequence[int], parent_run_id: str) -> list[subprocess.Popen]:
    """Extra local worker processes 1..len(quotas)-1 on the same storage, worker i running quotas[i] trials.

    `command` runs the train stage (the process calling this is worker 0, with quotas[0]).
    """
    import torch

    workers = len(quotas)
    gpus = torch.cuda.device_count()
    threads = cpu_threads_per_worker(workers)
    if gpus == 0 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads)  # this process is worker 0
    return [
        subprocess.Popen(
            [*command, "--parent-run-id", parent_run_id, "--worker", str(index), "--trials", str(quotas[index])],
            cwd=Path.cwd(),
            env=worker_environment(index, gpus, workers, threads, dict(os.environ)),
        )
        for index in range(1, workers)
    ]


def stage_command(module: str) -> list[str]:
    """The command that runs a stage module with this interpreter."""
    return [sys.executable, "-m", module]
