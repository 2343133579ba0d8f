"""The GitHub Actions workflows: valid against GitHub's workflow schema, and doing what the README says.

actionlint cannot be installed offline; check-jsonschema ships SchemaStore's github-workflow schema.
"""

import subprocess
import sys

import yaml

from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"


def test_workflows_match_the_github_workflow_schema():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [path.name for path in files] == ["gpu-train.yml", "test.yml"]
    checked = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_gpu_workflow_reproduces_on_a_gpu_runner_and_reports_the_diff():
    job = yaml.safe_load((WORKFLOWS / "gpu-train.yml").read_text(encoding="utf-8"))["jobs"]["train"]
    commands = "\n".join(step.get("run", "") for step in job["steps"])
    assert job["runs-on"] == ["self-hosted", "gpu"]
    for command in ("dvc pull", "dvc repro", "dvc push", "dvc metrics diff", "dvc params diff", "gh pr comment"):
        assert command in commands, command


def test_cpu_workflow_runs_the_readme_test_command():
    job = next(iter(yaml.safe_load((WORKFLOWS / "test.yml").read_text(encoding="utf-8"))["jobs"].values()))
    assert any(step.get("run", "").strip().startswith("make test") for step in job["steps"])
