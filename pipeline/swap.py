"""Replacing an output folder whole: a complete folder is always in place, and a killed writer leaves nothing.

A writer fills a staging folder beside the target (same filesystem) and exchanges the two in one atomic
rename (Linux renameat2 RENAME_EXCHANGE; two renames elsewhere). The staging name carries the writer's PID,
and a small detached watchdog process removes the writer's staging folders once the writer has exited,
however it ended: DVC may restore a killed stage's outputs from its run cache without running the stage
again, so nothing in the next run could be relied on to clean up after the killed one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

STAGING_SUFFIX = ".partial"  # tests/support/crash.py looks for leftovers by this suffix
RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100

# Run by the watchdog (`python -c`, standard library only, so it starts in milliseconds): wait for the writer
# (a pidfd never confuses it with a later process of the same PID), then remove what it staged.
WATCHDOG = """
import os, select, shutil, sys, time
pid, paths = int(sys.argv[1]), sys.argv[2:]
try:
    descriptor = os.pidfd_open(pid)
    select.select([descriptor], [], [])
except ProcessLookupError:
    pass
except (AttributeError, OSError):
    while os.path.exists(f"/proc/{pid}"):
        time.sleep(0.2)
for path in paths:
    shutil.rmtree(path, ignore_errors=True)
"""


def staging_path(target: Path, role: str = "new") -> Path:
    """Where this process stages a replacement of target (unique to the process, so writers never collide)."""
    return target.with_name(f"{target.name}.{role}-{os.getpid()}{STAGING_SUFFIX}")


def remove_stale_staging(target: Path) -> None:
    """Staging folders of target left by writers that are no longer running (their watchdog may not have run)."""
    for stale in target.parent.glob(f"{target.name}.*{STAGING_SUFFIX}"):
        pid = stale.name.removesuffix(STAGING_SUFFIX).rpartition("-")[2]
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists() or int(pid) == os.getpid():
            shutil.rmtree(stale, ignore_errors=True)


def watch_for_exit(paths: list[Path]) -> None:
    """Start a detached process that removes paths once this process has exited (double-forked through a shell
    so it is not this process's child: killing this process's tree does not kill it)."""
    arguments = " ".join(shlex.quote(part) for part in [sys.executable, "-c", WATCHDOG, str(os.getpid()), *map(str, paths)])
    subprocess.run(["/bin/sh", "-c", f"{arguments} >/dev/null 2>&1 </dev/null &"], check=False)


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    result = libc.renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE)
    return result == 0


def replace_folder(target: Path, fill: Callable[[Path], None]) -> None:
    """Fill a staging folder beside target, then swap it in whole: a crash never leaves a half model, and some
    complete folder is at target at every moment (the old one until the atomic exchange, the new one after)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    staging, retired = staging_path(target), staging_path(target, "old")
    watch_for_exit([staging, retired])
    try:
        fill(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists() and exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the old folder
        return
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
