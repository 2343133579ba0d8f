"""Data-parallel trials: one trial trained by several processes (torchrun + Trainer's DDP), led by rank 0.

When `train.data_parallel` resolves to more than one process, the train stage relaunches itself under
`torch.distributed.run` (torchrun). Rank 0 runs the Optuna study and talks to MLflow exactly as a single
process does; the other ranks follow: before each trial (and the refit) rank 0 announces it, every rank wraps the trial in
optuna-integration's `TorchDistributedTrial` (sampled params, reports and pruning decisions come from
rank 0), and Trainer / accelerate shard the batches and all-reduce the gradients. One host per trial:
the ranks share the checkpoint folder on its disk.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from pipeline.errors import ConfigError, PipelineError

CONTROL_TIMEOUT = datetime.timedelta(days=2)
NEXT_TRIAL = "trial"
NO_MORE_TRIALS = "done"
REFIT = "refit"
# What torchrun puts in each rank's environment; a worker process the leader starts must not inherit it.
LAUNCHER_VARIABLES = frozenset(
    {
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "GROUP_WORLD_SIZE",
        "ROLE_NAME",
        "ROLE_RANK",
        "ROLE_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    }
)

_control_group = None  # a gloo group for the leader's announcements (works when the training group is NCCL)


def processes_per_trial(setting: int | str, gpu_count: int, workers_sharing: int) -> int:
    """How many processes train one trial.

    "auto": the GPUs this process may use (its share when `workers_sharing` local workers split them),
    one process on CPU or with a single GPU. A number: that many, GPUs or (with the gloo backend) CPU
    processes; more than the GPUs there are is an error.
    """
    if setting == "auto":
        return max(1, gpu_count // workers_sharing) if gpu_count > 1 else 1
    if gpu_count and setting * workers_sharing > gpu_count:
        raise ConfigError(
            f"train.data_parallel {setting} x study.workers {workers_sharing} needs {setting * workers_sharing} GPUs; "
            f"this runner has {gpu_count}"
        )
    return int(setting)


def worker_gpus(index: int, gpu_count: int, workers: int) -> list[int]:
    """The GPUs local worker `index` trains on: an equal slice each, or one shared round-robin when fewer GPUs."""
    if workers >= gpu_count:
        return [index % gpu_count]
    per_worker = gpu_count // workers
    return list(range(index * per_worker, (index + 1) * per_worker))


def launched(environ: Mapping[str, str] = os.environ) -> bool:
    """True in a rank started by torchrun with more than one process (judged by the given environment)."""
    return int(environ.get("WORLD_SIZE", "1")) > 1


def without_launcher_variables(environ: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in environ.items() if key not in LAUNCHER_VARIABLES and not key.startswith("TORCHELASTIC_")}


def launcher_command(processes: int, module: str, argv: Sequence[str]) -> list[str]:
    """torchrun on this host (a free rendezvous port of its own, so several workers can each launch)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m", module, *argv]


def relaunch(processes: int, module: str, argv: Sequence[str], thread_budget: int) -> None:
    """Run the train stage `module` again as `processes` ranks under torchrun and wait; PipelineError on failure.

    The CPU threads this process may use are split among its ranks (torchrun's own default is 1 each).
    """
    environment = dict(os.environ)
    environment["OMP_NUM_THREADS"] = str(max(1, thread_budget // processes))
    print(f"train: {processes} processes per trial (torchrun, data parallel)", flush=True)
    code = subprocess.run(launcher_command(processes, module, argv), env=environment).returncode
    if code != 0:
        raise PipelineError(f"the data-parallel train ranks failed (torchrun exit status {code}); see their output above")


def start() -> None:
    """In a torchrun rank: join the process group (NCCL on GPUs, gloo on CPU) and make the control group."""
    global _control_group
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    # Followers wait on this group between trials, also while rank 0 waits for other workers' trials:
    # far longer than the default 30-minute collective timeout.
    _control_group = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)


def stop() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Processes training each trial: 1 unless this is a torchrun rank."""
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def is_leader() -> bool:
    """Rank 0, or the only process."""
    import torch.distributed as dist

    return not active() or dist.get_rank() == 0


def _broadcast(value: Any) -> Any:
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control_group)
    return box[0]


def shared_trial(trial):
    """Leader: the trial as every rank will see it (announced to the followers); the trial itself alone."""
    if not active():
        return trial
    from optuna_integration import TorchDistributedTrial

    _broadcast(NEXT_TRIAL)
    return TorchDistributedTrial(trial, group=_control_group)


def release_followers() -> None:
    """Leader: tell the followers there are no more trials (they leave their loop and exit)."""
    if active() and is_leader():
        _broadcast(NO_MORE_TRIALS)


def shared_refit(setup: Any) -> None:
    """Leader: announce the refit (its TrialSetup) so that every rank trains it too."""
    if active():
        _broadcast((REFIT, setup))


def follow_trials(train_trial: Callable[[Any], Any], train_refit: Callable[[Any], Any]) -> None:
    """Follower: train each trial (and the refit) the leader announces, until it says there are no more.

    A pruned trial is pruned on every rank at once (the decision is broadcast); any other error ends this
    rank, and torchrun then stops the others (the stage fails; a rerun resumes the study).
    """
    import optuna
    from optuna_integration import TorchDistributedTrial

    while (message := _broadcast(None)) != NO_MORE_TRIALS:
        if message == NEXT_TRIAL:
            with suppress(optuna.TrialPruned):
                train_trial(TorchDistributedTrial(None, group=_control_group))
        else:  # (REFIT, setup)
            train_refit(message[1])


@contextmanager
def shared_temporary_directory(prefix: str) -> Iterator[str]:
    """A temporary folder that every rank of the trial uses (Trainer saves on rank 0, all ranks load the best)."""
    if not active():
        with tempfile.TemporaryDirectory(prefix=prefix) as folder:
            yield folder
        return
    import torch.distributed as dist

    folder = _broadcast(tempfile.mkdtemp(prefix=prefix) if is_leader() else None)
    try:
        yield folder
        dist.barrier(group=_control_group)  # nobody still reads it when it goes
    finally:
        if is_leader():
            shutil.rmtree(folder, ignore_errors=True)
