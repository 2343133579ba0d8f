"""Shared fixtures: offline environment, a network guard, the mirror, a small mirror, a tiny BERT."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml

from serving.ports import free_local_port
from tests.support.toy_models import write_small_mirror

REPO = Path(__file__).resolve().parents[1]
MIRROR = (REPO / ".." / "shared" / "data").resolve()

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(OFFLINE_ENV)


def _is_local(address) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def network_guard(monkeypatch):
    """Any connection from test code to a non-loopback address fails the test before a packet leaves."""
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        if not _is_local(address):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


STORE_VARIABLES = ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")


@pytest.fixture(autouse=True)
def no_leaked_store_urls():
    """mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI in os.environ: one test's store must not become the
    store of the next test's subprocesses (a DVC run would log to another repository's database)."""
    saved = {name: os.environ.get(name) for name in STORE_VARIABLES}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not (MIRROR / "korsts" / "sts-train.tsv").is_file():
        pytest.fail(f"the offline data mirror is missing at {MIRROR} (see docs/models-and-heads.md: Data)")
    return MIRROR


@pytest.fixture()
def small_mirror(mirror, tmp_path) -> Path:
    return write_small_mirror(mirror, tmp_path / "mirror")


def mirror_sentences(mirror: Path, limit: int = 600) -> list[str]:
    """Korean sentences from KorSTS train, to train tiny vocabularies on."""
    sentences = []
    for line in (mirror / "korsts/sts-train.tsv").read_text(encoding="utf-8").splitlines()[1 : limit // 2 + 1]:
        fields = line.split("\t")
        sentences += fields[5:7]
    return sentences


@pytest.fixture(scope="session")
def tiny_bert(mirror, tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary trained on mirror sentences."""
    from tests.support.toy_models import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), mirror_sentences(mirror), vocab_size=800)


@pytest.fixture(scope="session")
def tiny_roberta(mirror, tmp_path_factory) -> Path:
    """A 2-layer, 32-wide RoBERTa with a byte-level BPE vocabulary trained on mirror sentences."""
    from tests.support.toy_models import build_tiny_roberta

    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"), mirror_sentences(mirror), vocab_size=800)


REPO_FILES = (
    "pipeline",
    "serving",
    ".dvc",
    "dvc.yaml",
    "params.yaml",
    ".gitignore",
    "pyproject.toml",
    "service.py",
    "bentofile.yaml",
)


def copy_repository(target: Path) -> Path:
    """The pipeline's files in a new folder: what a user's clone holds."""
    target.mkdir(parents=True)
    for name in REPO_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        else:
            shutil.copy2(source, target / name)
    return target


@pytest.fixture()
def repo_copy(tmp_path) -> Path:
    """A copy of the repository's files in a temp folder."""
    return copy_repository(tmp_path / "repo")


@contextlib.contextmanager
def running_server(name: str, command: Sequence[str], ready_url: str, log: Path, timeout: float = 180, **popen) -> Iterator[None]:
    """Run a server in its own process group until `ready_url` answers 200; afterwards stop the group by its PID.

    A server that exits or is not ready in time fails the test with the tail of its log.
    """
    import httpx

    with log.open("w") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True, **popen)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not ready after {timeout:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server's own process group: its workers too
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server from Debian's packages on 127.0.0.1 (as the postgres user; CI runs as root)."""
    import subprocess

    binaries = Path("/usr/lib/postgresql")
    versions = sorted(binaries.glob("*/bin/pg_ctl")) if binaries.is_dir() else []
    if not versions:
        pytest.skip("PostgreSQL server binaries are not installed (Debian package postgresql)")
    if os.geteuid() != 0:
        pytest.skip("starting a throwaway PostgreSQL needs root (to run it as the postgres user)")
    bin_dir = versions[-1].parent
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))  # not under pytest's 0700 tree: postgres must enter it
    shutil.chown(folder, "postgres")
    data, port = folder / "data", free_local_port()

    def as_postgres(*command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120)

    as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder}"
    as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(folder / "log"), "start")
    try:
        as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "studies")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/studies"
    finally:
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def stage_repo(tmp_path, small_mirror, tiny_bert, monkeypatch):
    """A work folder with params for a tiny study and the tokenize stage's output already there."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["mirror_dir"] = str(small_mirror)
    params["model"].update(name=str(tiny_bert), max_length=48)
    params["train"].update(epochs=1, batch_size=16, learning_rate=1e-3, eval_batch_size=32)
    params["study"].update(n_trials=3, heartbeat_seconds=2, pruner="none")
    params["refit"].update(enabled=False)  # the trials' own models; the refit's tests turn it on
    params["study"]["search"].update(learning_rate=[3e-4, 1e-3], batch_size=[16, 32], epochs=[1, 2])
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    shutil.copy2(REPO / "dvc.yaml", work / "dvc.yaml")  # the train stage's deps and params name its study
    monkeypatch.chdir(work)
    for name in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    from pipeline.stages import base, download, preprocess, tokenize

    for stage in (download, preprocess, base, tokenize):
        stage.main()
    return work
