"""The registry format of a pair model: an MLflow pyfunc whose artifact is the saved model folder.

One format for every head: `mlflow.pyfunc.load_model(uri).predict(DataFrame[sentence1, sentence2])` returns
0-5 scores (the text-classification pyfunc of mlflow.transformers scores single strings, not pairs), and
the folder itself (safetensors + tokenizer + similarity.json) is what evaluate, the service and the
BentoML store load. The pyfunc is defined as code (pipeline/pyfunc_model.py), not pickled.
"""

from __future__ import annotations

from pathlib import Path

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
