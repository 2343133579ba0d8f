"""Stage package: the champion model from the MLflow registry into the BentoML model store, then a Bento.

1. Download the champion version register recorded, by its exact version (`models:/<name>/<version>`, not the
   alias, which another registration may move meanwhile), as a pair-model folder (pipeline.registry) and
   verify it: exactly the files register recorded for that version, with their SHA-256, and no pickle file.
   The folder holds the serving graph register exported and gated; its serving record (runtime, gate figures,
   test metrics as served) comes with it: nothing is exported, gated or scored again here.
2. Import it as BentoML model `serve.model_name` (the folder is copied under `pair_model/`; labels name the
   registry version and runtime), so the service needs no MLflow at run time. Re-importing the same champion
   with the same files reuses the stored model instead of adding a copy.
3. Build the Bento described by bentofile.yaml (service.py + serving/ + the model; pinned requirements, no lock
   step, so it builds offline): for a torch-free runtime without torch, transformers, sentence-transformers,
   scipy and the pipeline package (TORCH_RUNTIME_PACKAGES); else with them. Write reports/package.json.

The BentoML store is BENTOML_HOME, `<repo>/bentoml_home` unless set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.config import load_params, load_serve_settings
from pipeline.errors import PipelineError, run_stage
from pipeline.models import ModelSettings
from pipeline.paths import BENTOFILE, BENTOML_HOME_DIR, MODEL_CARD_FILE, PACKAGE_REPORT, PAIR_FOLDER, REGISTER_REPORT
from pipeline.registry import file_hashes, files_digest
from pipeline.tables import write_json

CONTENT_LABEL = "content_sha256"
# What only the torch runtime serves with: the Bento of a torch-free champion (onnx, onnx-int8) leaves these
# packages and the pipeline package out; its worker runs service.py and serving/ (tokenizers + onnxruntime + numpy).
TORCH_RUNTIME_PACKAGES = frozenset({"torch", "transformers", "sentence-transformers", "safetensors", "scipy"})
TORCH_RUNTIME_INCLUDE = "/pipeline/"


def use_bentoml_home(root: Path) -> Path:
    """BENTOML_HOME if set, else <root>/bentoml_home; exported so that BentoML (imported later) uses it."""
    home = Path(os.environ.get("BENTOML_HOME") or root / BENTOML_HOME_DIR).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(home)
    return home


def find_stored_model(name: str, labels: dict[str, str]) -> str | None:
    """The tag of a stored model `name` whose labels include all of labels, newest first; None if none."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        candidates = bentoml.models.list(name)
    except NotFound:
        return None
    for model in sorted(candidates, key=lambda m: m.info.creation_time, reverse=True):
        if all(model.info.labels.get(key) == value for key, value in labels.items()):
            return str(model.tag)
    return None


def import_pair_model(
    folder: str | Path, name: str, labels: dict[str, str] | None = None, metadata: dict[str, Any] | None = None
) -> str:
    """Import a saved pair-model folder into the BentoML model store as `name`; returns the model tag.

    The folder must hold a pair model (similarity.json). Its files go to `<model path>/pair_model`, those its runtime
    serves with (label `runtime`; Runtime.ships: an ONNX runtime leaves the PyTorch weights out); its settings go to the
    model's metadata; its content digest to a label, so that importing identical files with identical labels again
    returns the stored tag instead of a new version.
    """
    import bentoml

    from pipeline.runtimes import RUNTIMES

    folder = Path(folder)
    settings = ModelSettings.load(folder)  # a clear error when the folder is not a pair model
    runtime = RUNTIMES[(labels or {}).get("runtime", "torch")]
    shipped = {relative: digest for relative, digest in file_hashes(folder).items() if runtime.ships(relative)}
    all_labels = {**(labels or {}), CONTENT_LABEL: files_digest(shipped)}
    existing = find_stored_model(name, all_labels)
    if existing is not None:
        return existing
    with bentoml.models.create(name, labels=all_labels, metadata={**(metadata or {}), "similarity": asdict(settings)}) as model:
        target = Path(model.path_of(PAIR_FOLDER))
        for relative in shipped:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / relative, target / relative)
    return str(model.tag)


def bento_config(bentofile: str | Path, torch_free: bool) -> dict[str, Any]:
    """bentofile.yaml as `bentoml.bentos.build` options; for a torch-free runtime without what only torch serving needs."""
    import yaml

    config = yaml.safe_load(Path(bentofile).read_text(encoding="utf-8"))
    if torch_free:
        packages = config["python"]["packages"]
        kept = [spec for spec in packages if re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0] not in TORCH_RUNTIME_PACKAGES]
        config["python"] = {**config["python"], "packages": kept}
        config["include"] = [entry for entry in config["include"] if entry != TORCH_RUNTIME_INCLUDE]
    return config


def build_bento(
    bentofile: str | Path, build_ctx: str | Path, model_tag: str, labels: dict[str, str] | None = None, torch_free: bool = False
) -> str:
    """`bentoml build --arg model_tag=MODEL_TAG` of bentofile in build_ctx (lean when torch_free); returns the Bento tag.

    The argument pins the exact model in the Bento (service.py reads it), whatever `latest` is later.
    """
    import bentoml

    config = bento_config(bentofile, torch_free)
    service = config.pop("service")
    config["labels"] = {**config.get("labels", {}), **(labels or {})}
    bento = bentoml.bentos.build(service, build_ctx=str(build_ctx), args={"model_tag": model_tag}, **config)
    return str(bento.tag)


def champion_from_report(path: Path = REGISTER_REPORT) -> dict[str, str]:
    """Model name, champion version and its exact-version URI from the register stage's report."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise PipelineError(f"{path}: not found (run the register stage first)") from error
    if not report.get("champion_version"):
        raise PipelineError(f"{path}: no champion version recorded")
    return {
        "registry_model": str(report["model_name"]),
        "registry_version": str(report["champion_version"]),
        "alias": str(report["alias"]),
        "model_uri": f"models:/{report['model_name']}/{report['champion_version']}",
    }


def write_model_card(champion: dict[str, str], path: Path) -> None:
    """The champion's model card (an artifact of its run, written by register) to path, which the Bento ships."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    run_id = MlflowClient().get_model_version(champion["registry_model"], champion["registry_version"]).run_id
    from pipeline.model_card import card_artifact_folder

    artifact = f"{card_artifact_folder(champion['registry_version'])}/{MODEL_CARD_FILE}"
    try:
        with tempfile.TemporaryDirectory() as staging:
            shutil.copy(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=staging), path)
    except MlflowException as error:
        raise PipelineError(f"{champion['model_uri']}: no {artifact} in run {run_id}: rerun register") from error


def main() -> None:
    import mlflow

    from pipeline.registry import download_verified, serving_record
    from pipeline.runtimes import RUNTIMES
    from pipeline.tracking import mlflow_tracking_uri

    root = Path.cwd()
    params = load_params()
    settings = load_serve_settings()
    home = use_bentoml_home(root)
    champion = champion_from_report()
    mlflow.set_tracking_uri(mlflow_tracking_uri(params.mlflow.tracking_uri, root))
    name, version = champion["registry_model"], champion["registry_version"]
    serving = serving_record(name, version)
    if serving is None:
        raise PipelineError(f"{champion['model_uri']}: no serving record (registered by an older register): rerun register")
    runtime = serving["runtime"]["runtime"]
    with tempfile.TemporaryDirectory(prefix="champion-") as staging:
        folder = download_verified(name, version, Path(staging) / "model")  # the graph register gated, hashes checked
        write_model_card(champion, folder / MODEL_CARD_FILE)
        labels = {**{key: champion[key] for key in ("registry_model", "registry_version", "alias")}, "runtime": runtime}
        metadata = {"model_uri": champion["model_uri"], "runtime": serving["runtime"]}
        model_tag = import_pair_model(folder, settings.model_name.split(":")[0], labels, metadata)
    bento_labels = {"model": model_tag, "registry_version": version, "runtime": runtime}
    bento_tag = build_bento(BENTOFILE, root, model_tag, bento_labels, RUNTIMES[runtime].torch_free)
    report = {"bento": bento_tag, "model": model_tag, "model_version": model_tag.partition(":")[2], **champion}
    write_json(PACKAGE_REPORT, {**report, "runtime": serving["runtime"], "test": serving["test"], "bentoml_home": str(home)})
    print(f"package: {champion['model_uri']} (v{version}) -> model {model_tag}, bento {bento_tag}")
    print(f"package: runtime {runtime} ({serving['runtime']['reason']}), as register gated it")


if __name__ == "__main__":
    run_stage(main)
