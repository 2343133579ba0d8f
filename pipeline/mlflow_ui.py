"""The MLflow UI over the pipeline's store, and the link that opens it on the study's runs (`make ui`).

    python -m pipeline.mlflow_ui [--port 5000] [--host 127.0.0.1]

MLflow 3.17's UI opens every experiment in its GenAI view (an empty traces overview) until the sidebar's switch is
set to "Model training", which the browser then remembers; the experiment's tag mlflow.experimentKind
(pipeline.tracking.ensure_experiment) does not change that in 3.17. The printed link opens the training view
directly: the experiment's runs with `?workflowType=machine_learning`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.paths import MLFLOW_ARTIFACTS

TRAINING_VIEW = "workflowType=machine_learning"  # the UI's switch, as a URL parameter (it wins over the stored one)


def training_view_url(base_url: str, experiment_id: str | None) -> str:
    """The experiment's runs table in the UI's model-training view (the experiments list when it has no id yet)."""
    page = f"experiments/{experiment_id}/runs" if experiment_id else "experiments"
    return f"{base_url.rstrip('/')}/#/{page}?{TRAINING_VIEW}"


def ui_command(tracking_uri: str, root: Path, host: str, port: int) -> list[str]:
    """`mlflow ui` over the store, with the artifacts where ensure_experiment puts them."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    artifacts = str((root / MLFLOW_ARTIFACTS).resolve())
    store = ["--backend-store-uri", tracking_uri, "--default-artifact-root", artifacts]
    return [mlflow, "ui", *store, "--host", host, "--port", str(port)]


def main(arguments: Sequence[str]) -> None:
    import mlflow

    from pipeline.config import load_params
    from pipeline.tracking import mlflow_tracking_uri

    parser = argparse.ArgumentParser(prog="python -m pipeline.mlflow_ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    options = parser.parse_args(arguments)
    params, root = load_params(), Path.cwd()
    uri = mlflow_tracking_uri(params.mlflow.tracking_uri, root)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(params.mlflow.experiment)
    experiment_id = experiment.experiment_id if experiment else None
    if uri.startswith(("http://", "https://")):  # a tracking server already serves the UI
        print(f"MLflow UI (training view): {training_view_url(uri, experiment_id)}", flush=True)
        return
    print(f"MLflow UI (training view): {training_view_url(f'http://{options.host}:{options.port}', experiment_id)}", flush=True)
    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job runner beside the UI
    command = ui_command(uri, root, options.host, options.port)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
