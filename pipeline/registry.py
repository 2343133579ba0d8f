"""The registry format of a pair model: an MLflow pyfunc whose artifact is the saved model folder.

One format for every head: `mlflow.pyfunc.load_model(uri).predict(DataFrame[sentence1, sentence2])` returns
0-5 scores (the text-classification pyfunc of mlflow.transformers scores single strings, not pairs), and
the folder itself (safetensors + tokenizer + similarity.json) is what evaluate, the service and the
BentoML store load. The pyfunc is defined as code (pipeline/pyfunc_model.py), not pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.digests import file_digest, json_digest
from pipeline.errors import PipelineError
from pipeline.paths import ONNX_DIR, PAIR_FOLDER, SETTINGS_FILE

PAIR_MODEL_ARTIFACT = PAIR_FOLDER  # the artifact key of the logged pyfunc (pyfunc_model.py reads it)
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model (mlflow's inferred list adds torchvision, which we do not use)."""
    from importlib.metadata import version

    torch_version = version("torch").split("+")[0]
    packages = ("transformers", "tokenizers", "safetensors", "sentence-transformers", "numpy", "scipy", "pandas")
    return [f"torch=={torch_version}", *(f"{name}=={version(name)}" for name in packages)]


def log_pair_model(folder: Path, signature, input_example, metadata: dict):
    """Log the folder as a pyfunc model named `model` on the active run; returns mlflow's ModelInfo."""
    import mlflow

    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_CODE),
        artifacts={PAIR_MODEL_ARTIFACT: str(folder)},
        code_paths=[str(Path(__file__).parent)],
        pip_requirements=pip_requirements(),
        signature=signature,
        input_example=input_example,
        metadata=metadata,
    )


def download_pair_model(model_uri: str, destination: Path) -> Path:
    """Download a registered pair model (e.g. `models:/korean-sts-similarity@champion`); returns its folder."""
    import mlflow
    from mlflow.exceptions import MlflowException

    destination.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(destination)))
    except MlflowException as error:
        raise PipelineError(f"cannot download {model_uri}: {error.message}") from error
    import yaml

    try:
        mlmodel = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))
        folder = local / mlmodel["flavors"]["python_function"]["artifacts"][PAIR_MODEL_ARTIFACT]["path"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        folder = None
    if folder is None or not (folder / SETTINGS_FILE).is_file():
        raise PipelineError(f"{model_uri} is not a pair model logged by the register stage (no {PAIR_MODEL_ARTIFACT} folder)")
    return folder


# Model integrity: register logs every file's SHA-256 as a JSON artifact of the run and tags the model version
# with that JSON's short digest (a tag the registry UI shows in full); package verifies the downloaded folder
# against it before serving it. The digest of the trained files alone (the folder without the serving graphs that
# register builds into it) finds a version of the same trained model (no duplicate versions).
FILES_DIGEST_TAG = "pair_model.files_digest"
FILES_ARTIFACT_TAG = "pair_model.files_artifact"  # where in the version's run the file hashes are
TRAINED_DIGEST_TAG = "pair_model.trained_digest"
# What register built and measured for serving (runtime and gate figures, test metrics as served, latency): an
# artifact of the version's run, which package ships without exporting or gating again.
SERVING_RECORD_TAG = "serving.record"
SERVING_RUNTIME_TAG = "serving.runtime"
SERVING_RECIPE_TAG = "serving.int8_recipe"  # onnx-int8 only: which int8 recipe made the served graph
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")  # loading one can run code


def file_hashes(folder: Path) -> dict[str, str]:
    """{relative path: SHA-256} of every file in folder, refusing pickle weights (we load safetensors only)."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    pickles = [path.relative_to(folder).as_posix() for path in files if path.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise PipelineError(f"{folder}: holds pickle files ({', '.join(pickles)}); a pair model is safetensors only")
    return {path.relative_to(folder).as_posix(): file_digest(path) for path in files}


def files_digest(hashes: dict[str, str]) -> str:
    """A short digest of a folder's file hashes: equal digests, identical files."""
    return json_digest(hashes, length=16)


def trained_files(hashes: dict[str, str]) -> dict[str, str]:
    """The hashes of the trained model's files: all but the serving graphs (ONNX_DIR) register builds beside them."""
    return {name: digest for name, digest in hashes.items() if not name.startswith(f"{ONNX_DIR}/")}


def log_file_hashes(hashes: dict[str, str]) -> dict[str, str]:
    """Log the hashes as an artifact of the active run; returns the version tags that point at it."""
    import mlflow

    digest = files_digest(hashes)
    artifact = f"integrity/files-{digest}.json"
    mlflow.log_dict(hashes, artifact)
    return {FILES_DIGEST_TAG: digest, FILES_ARTIFACT_TAG: artifact, TRAINED_DIGEST_TAG: files_digest(trained_files(hashes))}


def log_serving_record(record: dict[str, Any], run_id: str | None = None) -> dict[str, str]:
    """Log what register built for serving as an artifact of the run (the active one unless run_id); returns the tags."""
    import mlflow

    artifact = "serving/runtime.json"  # one trained model per run: a run's versions share their trained files
    if run_id is None:
        mlflow.log_dict(record, artifact)
    else:
        mlflow.MlflowClient().log_dict(run_id, record, artifact)
    recipe = record["runtime"].get("recipe")
    tags = {SERVING_RECORD_TAG: artifact, SERVING_RUNTIME_TAG: record["runtime"]["runtime"]}
    return tags | ({SERVING_RECIPE_TAG: recipe} if recipe else {})


def _run_json(model_name: str, version: str, run_id: str, artifact: str, what: str) -> Any:
    """A JSON artifact of a version's run, read through a temporary download; a PipelineError names `what` failed."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="version-artifact-") as staging:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=staging)
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (MlflowException, OSError, ValueError) as error:
            raise PipelineError(f"{model_name} v{version}: cannot read its {what} ({artifact}): {error}") from error


def serving_record(model_name: str, version: str) -> dict[str, Any] | None:
    """What register built and measured for serving a version, or None for a version registered without one."""
    import mlflow

    found = mlflow.MlflowClient().get_model_version(model_name, version)
    artifact = found.tags.get(SERVING_RECORD_TAG)
    return None if artifact is None else _run_json(model_name, version, found.run_id, artifact, "serving record")


def verify_files(folder: Path, recorded: dict[str, str], source: str) -> None:
    """A clear error unless folder holds exactly the recorded files with the recorded hashes (and no pickle)."""
    found = file_hashes(folder)
    problems = [f"{name}: missing" for name in sorted(set(recorded) - set(found))]
    problems += [f"{name}: not recorded" for name in sorted(set(found) - set(recorded))]
    problems += [f"{name}: SHA-256 differs" for name in sorted(set(found) & set(recorded)) if found[name] != recorded[name]]
    if problems:
        raise PipelineError(f"{source}: the model files differ from what register recorded: {'; '.join(problems)}")


def recorded_hashes(model_name: str, version: str) -> dict[str, str]:
    """The file hashes the register stage recorded for a model version (checked against the version's digest tag)."""
    import mlflow

    found = mlflow.MlflowClient().get_model_version(model_name, version)
    digest, artifact = found.tags.get(FILES_DIGEST_TAG), found.tags.get(FILES_ARTIFACT_TAG)
    if digest is None or artifact is None:
        raise PipelineError(f"{model_name} v{version}: no {FILES_DIGEST_TAG} tag (an older registration): rerun register")
    hashes = _run_json(model_name, version, found.run_id, artifact, "file hashes")
    if files_digest(hashes) != digest:
        raise PipelineError(f"{model_name} v{version}: {artifact} does not match the version's {FILES_DIGEST_TAG} tag")
    return hashes


def download_verified(model_name: str, version: str, destination: Path) -> Path:
    """A registered version's pair-model folder, downloaded by exact version into destination and verified against
    the hashes register recorded (a PipelineError names every difference)."""
    uri = f"models:/{model_name}/{version}"
    folder = download_pair_model(uri, destination)
    verify_files(folder, recorded_hashes(model_name, version), uri)
    return folder


def version_with_files(client, model_name: str, digest: str) -> str | None:
    """The registered version whose trained files have this digest (trained_files), if any (the newest)."""
    versions = client.search_model_versions(f"name = '{model_name}'")
    matching = [int(found.version) for found in versions if found.tags.get(TRAINED_DIGEST_TAG) == digest]
    return str(max(matching)) if matching else None


def champion_version(client, model_name: str, alias: str) -> str | None:
    """The version holding the alias; None only when the model or the alias does not exist. Any other registry
    error is a PipelineError: taking it for "no champion" would promote blindly."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(model_name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise PipelineError(f"cannot read the registry's {model_name}@{alias}: {error.message}") from error
    except Exception as error:  # the store's own errors (SQLAlchemy, HTTP): the same, nothing is decided
        raise PipelineError(f"cannot read the registry's {model_name}@{alias}: {error}") from error
    version = dict(model.aliases or {}).get(alias)
    return None if version is None else str(version)
