"""The registry format of a pair model: an MLflow pyfunc whose artifact is the saved model folder.

One format for every head: `mlflow.pyfunc.load_model(uri).predict(DataFrame[sentence1, sentence2])` returns
0-5 scores (the text-classification pyfunc of mlflow.transformers scores single strings, not pairs), and
the folder itself (safetensors + tokenizer + similarity.json) is what evaluate, the service and the
BentoML store load. The pyfunc is defined as code (pipeline/pyfunc_model.py), not pickled.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.digests import file_digest
from pipeline.errors import PipelineError
from pipeline.paths import PAIR_FOLDER, SETTINGS_FILE

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


# Model integrity: register records every file's SHA-256 on the model version (a registry tag, beside the
# artifacts it vouches for); package verifies the downloaded folder against it before serving it.
FILES_TAG = "pair_model.files_sha256"
MAX_TAG_CHARS = 8000  # MLflow truncates longer tag values
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")  # loading one can run code


def file_hashes(folder: Path) -> dict[str, str]:
    """{relative path: SHA-256} of every file in folder, refusing pickle weights (we load safetensors only)."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    pickles = [path.relative_to(folder).as_posix() for path in files if path.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise PipelineError(f"{folder}: holds pickle files ({', '.join(pickles)}); a pair model is safetensors only")
    return {path.relative_to(folder).as_posix(): file_digest(path) for path in files}


def hashes_tag(folder: Path) -> dict[str, str]:
    """The model version tag that records folder's file hashes."""
    import json

    value = json.dumps(file_hashes(folder), sort_keys=True)
    if len(value) > MAX_TAG_CHARS:
        raise PipelineError(f"{folder}: too many files to record their hashes in one registry tag ({len(value)} characters)")
    return {FILES_TAG: value}


def verify_files(folder: Path, recorded: dict[str, str], source: str) -> None:
    """A clear error unless folder holds exactly the recorded files with the recorded hashes (and no pickle)."""
    found = file_hashes(folder)
    problems = [f"{name}: missing" for name in sorted(set(recorded) - set(found))]
    problems += [f"{name}: not recorded" for name in sorted(set(found) - set(recorded))]
    problems += [f"{name}: SHA-256 differs" for name in sorted(set(found) & set(recorded)) if found[name] != recorded[name]]
    if problems:
        raise PipelineError(f"{source}: the model files differ from what register recorded: {'; '.join(problems)}")


def recorded_hashes(model_name: str, version: str) -> dict[str, str]:
    """The file hashes the register stage recorded on a model version."""
    import json

    from mlflow import MlflowClient

    recorded = MlflowClient().get_model_version(model_name, version).tags.get(FILES_TAG)
    if recorded is None:
        raise PipelineError(f"{model_name} v{version}: no {FILES_TAG} tag (registered before integrity records): rerun register")
    return json.loads(recorded)
