"""Helpers over a stage work folder: edit its study params, read its MLflow runs."""

import yaml


def set_section(work, section, **values):
    """Update one params section of the work folder's params.yaml."""
    params = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))
    params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def set_study(work, **values):
    set_section(work, "study", **values)


def runs_of(work):
    """(parent runs, child runs) of the study experiment in the work folder's MLflow store (refit runs are children)."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("korean-sts")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    parents = [run for run in runs if run.data.tags.get("korean_sts.role") == "study"]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    return parents, children
