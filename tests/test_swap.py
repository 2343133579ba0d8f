"""Folder swaps: atomic exchange, and a killed writer's staging folder removed by its watchdog."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.swap import STAGING_SUFFIX, exchange, remove_stale_staging, replace_folder
from tests.conftest import REPO


def write_file(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def leftovers(parent: Path) -> list[str]:
    return sorted(path.name for path in parent.glob(f"*{STAGING_SUFFIX}"))


def test_replace_folder_swaps_in_the_new_folder_and_leaves_nothing(tmp_path):
    target = tmp_path / "model"
    replace_folder(target, lambda staging: write_file(staging, "weights", "old"))
    replace_folder(target, lambda staging: write_file(staging, "weights", "new"))
    assert (target / "weights").read_text(encoding="utf-8") == "new"
    assert leftovers(tmp_path) == []


def test_a_failing_fill_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    replace_folder(target, lambda staging: write_file(staging, "weights", "old"))

    def broken(staging: Path) -> None:
        write_file(staging, "half", "x")
        raise RuntimeError("fill failed")

    with pytest.raises(RuntimeError):
        replace_folder(target, broken)
    assert (target / "weights").read_text(encoding="utf-8") == "old" and leftovers(tmp_path) == []


def test_exchange_swaps_two_folders_atomically(tmp_path):
    write_file(tmp_path / "a", "name", "a")
    write_file(tmp_path / "b", "name", "b")
    if not exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("renameat2 RENAME_EXCHANGE is not available here (replace_folder falls back to two renames)")
    assert (tmp_path / "a/name").read_text(encoding="utf-8") == "b" and (tmp_path / "b/name").read_text(encoding="utf-8") == "a"


WRITER = """
import sys, time
from pathlib import Path
from pipeline.swap import replace_folder

def fill(staging):
    staging.mkdir()
    (staging / "half").write_text("x")
    print("filling", flush=True)
    time.sleep(60)

replace_folder(Path(sys.argv[1]), fill)
"""


def test_a_killed_writers_staging_folder_is_removed_without_another_run(tmp_path):
    """SIGKILL cannot be caught: the writer's detached watchdog removes its staging folder once it has died."""
    target = tmp_path / "model"
    replace_folder(target, lambda staging: write_file(staging, "weights", "old"))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "filling"
    assert len(leftovers(tmp_path)) == 1
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    deadline = time.monotonic() + 10
    while leftovers(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(tmp_path) == [] and (target / "weights").read_text(encoding="utf-8") == "old"


def test_stale_staging_of_a_dead_writer_is_removed_by_the_next_writer(tmp_path):
    stale = tmp_path / f"model.new-999999999{STAGING_SUFFIX}"  # no such process
    write_file(stale, "half", "x")
    remove_stale_staging(tmp_path / "model")
    assert leftovers(tmp_path) == []
