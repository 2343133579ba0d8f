"""What names a study: everything a trial's result depends on.

A finished study is reused (its trials are not run again) only when its identity matches exactly, so the
identity covers what DVC reruns the train stage for: the params it reads and every file of its deps in
dvc.yaml (the data, the base model folder, the tokenized data and the code the stage imports; the
architecture test keeps those deps equal to the import closure). Excluded: params that only size or store
the study (more trials extend the same study), the refit and the calibration fitted after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.digests import json_digest, path_digest
from pipeline.errors import PipelineError
from pipeline.paths import PIPELINE_FILE

if TYPE_CHECKING:
    from pipeline.config import Params

TRAIN_STAGE = "train"
# Params the train stage reads that do not change what a trial computes.
NOT_IN_IDENTITY = {
    "train.calibration", "study.n_trials", "study.timeout_seconds", "study.storage", "study.workers", "mlflow",
    "refit",  # the refit runs after the trials and names its own model folder (pipeline.study.refit)
}  # fmt: skip


@dataclass(frozen=True)
class StudyIdentity:
    """The study's name suffix and what went into it (written to the study's MLflow run)."""

    digest: str  # 12 hex digits
    params_digest: str
    inputs: dict[str, str]  # dep path -> MD5 over its files


def train_stage_definition(root: Path) -> tuple[list[str], list[str]]:
    """The train stage's params keys and deps, as dvc.yaml declares them."""
    try:
        stage = yaml.safe_load((root / PIPELINE_FILE).read_text(encoding="utf-8"))["stages"][TRAIN_STAGE]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as error:
        raise PipelineError(f"{PIPELINE_FILE}: cannot read the {TRAIN_STAGE} stage's deps ({error})") from error
    return [str(key) for key in stage.get("params", [])], [str(dep) for dep in stage.get("deps", [])]


def identity_params(params: Params, keys: list[str]) -> dict[str, Any]:
    """The values of the params keys (`section` or `section.key`), without those in NOT_IN_IDENTITY."""
    values: dict[str, Any] = {}
    for key in keys:
        if key in NOT_IN_IDENTITY:
            continue
        section, _, field = key.partition(".")
        value = getattr(params, section).model_dump()
        if field:
            values[key] = value[field]
        else:
            values[key] = {name: item for name, item in value.items() if f"{key}.{name}" not in NOT_IN_IDENTITY}
    return values


def study_identity(params: Params, root: Path) -> StudyIdentity:
    """The identity of the study params and the files at root would train."""
    keys, deps = train_stage_definition(root)
    values = json.dumps(identity_params(params, keys), sort_keys=True, default=str)
    inputs = {dep: path_digest(root / dep) for dep in deps}
    whole = json_digest({"params": values, "inputs": inputs})
    return StudyIdentity(digest=whole, params_digest=json_digest(values), inputs=inputs)
