"""Adding a head touches only pipeline/heads/: a fourth head in a copy of the repository trains and scores."""

import csv
import json
import subprocess

from tests.conftest import REPO
from tests.test_pipeline_dvc import dvc, set_params, tiny_params

ANGULAR_HEAD = '''"""The `angular` head: the bi-encoder, scoring a pair by the angle between its embeddings (a test head)."""

from __future__ import annotations

import numpy as np

from pipeline.heads.base import LoadedModel
from pipeline.heads.bi import BiHead
from pipeline.metrics import MAX_SCORE


class AngularHead(BiHead):
    """Trained as the bi head; score = 5 x (1 - angle / pi) of the (clipped) cosine."""

    def forward(self, loaded: LoadedModel, first: list[str], second: list[str], device: str) -> np.ndarray:
        cosine = super().forward(loaded, first, second, device) / MAX_SCORE
        return MAX_SCORE * (1.0 - np.arccos(np.clip(cosine, -1.0, 1.0)) / np.pi)
'''


def git(repo, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout


def add_angular_head(repo) -> None:
    """The whole change: one module and one HEADS entry."""
    (repo / "pipeline/heads/angular.py").write_text(ANGULAR_HEAD, encoding="utf-8")
    registry = repo / "pipeline/heads/__init__.py"
    text = registry.read_text(encoding="utf-8")
    text = text.replace(
        "from pipeline.heads.base import", "from pipeline.heads.angular import AngularHead\nfrom pipeline.heads.base import"
    )
    text = text.replace('"bi": BiHead()}', '"bi": BiHead(), "angular": AngularHead()}')
    registry.write_text(text, encoding="utf-8")


def test_a_fourth_head_is_one_module_and_one_entry_and_runs_through_the_pipeline(repo_copy, small_mirror, tiny_bert):
    repo = tiny_params(repo_copy, small_mirror, tiny_bert)
    set_params(repo, study={"n_trials": 1})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    add_angular_head(repo)
    git(repo, "add", "-A")
    changed = git(repo, "diff", "--cached", "--name-only").split()
    assert changed == ["pipeline/heads/__init__.py", "pipeline/heads/angular.py"]
    print(git(repo, "diff", "--cached", "--stat"))  # the closing note quotes it
    git(repo, "commit", "-q", "-m", "angular head")

    set_params(repo, model={"head": "angular"}, train={"calibration": "off"})  # raw scores, as the head gives them
    result = dvc(repo, "repro", "evaluate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((repo / "models/model/similarity.json").read_text(encoding="utf-8"))["head"] == "angular"
    metrics = json.loads((repo / "reports/metrics.json").read_text(encoding="utf-8"))
    assert metrics["model"]["head"] == "angular" and metrics["test"]["pairs"] == 60
    with (repo / "reports/predictions.csv").open(encoding="utf-8") as table:
        scores = [float(row["predicted"]) for row in csv.DictReader(table)]
    assert min(scores) >= 2.5 - 1e-9 and max(scores) <= 5.0  # the angle of a clipped cosine maps into [2.5, 5]
    assert (REPO / "pipeline/heads/angular.py").exists() is False  # the repository itself is untouched
