"""The real pipeline through `dvc repro` in a temporary git repository, offline, on a tiny model."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import OFFLINE_ENV, REPO


def _no_network_prefix() -> list[str]:
    """`unshare -n` runs the command with no network at all, where this user may (root in CI)."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [*_no_network_prefix(), sys.executable, "-m", "dvc", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def set_params(repo: Path, **changes) -> None:
    """Edit params.yaml in the copy: changes like model={"name": ...}."""
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    for section, values in changes.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture()
def tiny_repo(repo_copy, small_mirror, tiny_bert):
    set_params(
        repo_copy,
        data={"mirror_dir": str(small_mirror)},
        model={"name": str(tiny_bert), "max_length": 64},
        train={"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "learning_rate": 1e-3},
        study={"n_trials": 2, "search": {**DEFAULT_SEARCH, "epochs": [1, 2], "learning_rate": [3e-4, 1e-3]}},
    )
    subprocess.run(["git", "init", "-q"], cwd=repo_copy, check=True)
    return repo_copy


STAGES = ("download", "preprocess", "base", "tokenize", "train", "evaluate", "register", "package")
DEFAULT_SEARCH = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["study"]["search"]


def test_repro_runs_every_stage_then_is_a_noop_then_reruns_only_what_changed(tiny_repo, small_mirror):
    first = dvc(tiny_repo, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout

    metrics = json.loads((tiny_repo / "reports/metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["pairs"] == 60 and metrics["threshold"] == 3.0
    assert set(metrics["test"]) == {"f1", "pearson", "spearman", "mse", "pairs"}
    test_rows = json.loads((small_mirror / "klue-sts/klue-sts-v1.1_dev.json").read_text(encoding="utf-8"))
    assert set(metrics["by_source"]) == {row["source"] for row in test_rows}
    assert sum(source["pairs"] for source in metrics["by_source"].values()) == 60
    predictions = (tiny_repo / "reports/predictions.csv").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 61 and predictions[0].startswith("guid,source,sentence1,sentence2,score,predicted")
    assert (tiny_repo / "models/model/model.safetensors").is_file()
    package = json.loads((tiny_repo / "reports/package.json").read_text(encoding="utf-8"))
    assert package["registry_version"] == "1" and package["bento"].startswith("korean_sts:")
    assert (tiny_repo / "bentoml_home/bentos/korean_sts").is_dir()
    preprocess = json.loads((tiny_repo / "reports/preprocess.json").read_text(encoding="utf-8"))
    assert preprocess["test"]["rows_out"] == 60
    lock = (tiny_repo / "dvc.lock").read_text(encoding="utf-8")

    second = dvc(tiny_repo, "repro")
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout
    assert (tiny_repo / "dvc.lock").read_text(encoding="utf-8") == lock

    set_params(tiny_repo, evaluate={"threshold": 3.5})  # an evaluate param: nothing upstream of evaluate reruns
    third = dvc(tiny_repo, "repro")
    assert third.returncode == 0, third.stderr
    # register logs a new version (the champion stays), so package rebuilds the Bento around the same model
    assert [stage for stage in STAGES if f"Running stage '{stage}'" in third.stdout] == ["evaluate", "register", "package"]
    assert json.loads((tiny_repo / "reports/metrics.json").read_text(encoding="utf-8"))["threshold"] == 3.5
    register = json.loads((tiny_repo / "reports/register.json").read_text(encoding="utf-8"))
    assert register["version"] == "2" and register["champion_uri"] == "models:/korean-sts-similarity@champion"

    shown = dvc(tiny_repo, "metrics", "show", "--json")
    assert shown.returncode == 0 and '"f1"' in shown.stdout

    # the default remote `storage` (a local path beside the repository): push, lose everything, pull it back
    pushed = dvc(tiny_repo, "push")
    assert pushed.returncode == 0, pushed.stderr
    assert any((tiny_repo.parent / "dvc-storage").rglob("*"))
    model_bytes = (tiny_repo / "models/model/model.safetensors").read_bytes()
    for lost in ("models", "data", "reports", ".dvc/cache"):  # (the BentoML store is outside DVC, like mlflow.db)
        shutil.rmtree(tiny_repo / lost)
    pulled = dvc(tiny_repo, "pull")
    assert pulled.returncode == 0, pulled.stderr
    assert (tiny_repo / "models/model/model.safetensors").read_bytes() == model_bytes
    status = dvc(tiny_repo, "status")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout


def test_bad_source_file_fails_the_stage_clearly_and_writes_nothing(tiny_repo, small_mirror):
    (small_mirror / "klue-sts/klue-sts-v1.1_dev.json").write_text('[{"guid": "x", ', encoding="utf-8")
    result = dvc(tiny_repo, "repro")
    assert result.returncode != 0
    assert "klue-sts-v1.1_dev.json: not valid JSON at line 1" in result.stderr + result.stdout
    assert not (tiny_repo / "data/raw").exists() or not any((tiny_repo / "data/raw").iterdir())
    assert not (tiny_repo / "dvc.lock").exists()


def test_out_of_range_score_stops_preprocess_naming_the_row(tiny_repo, small_mirror):
    path = small_mirror / "korsts/sts-dev.tsv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[5].split("\t")
    fields[4] = "7.5"
    lines[5] = "\t".join(fields)
    path.write_text("".join(lines), encoding="utf-8")
    result = dvc(tiny_repo, "repro")
    assert result.returncode != 0
    assert "sts-dev.tsv:6: score 7.5 is outside 0-5" in result.stderr + result.stdout
    assert not (tiny_repo / "data/clean").exists() or not any((tiny_repo / "data/clean").iterdir())
