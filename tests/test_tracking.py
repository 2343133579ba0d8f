"""pipeline/tracking.py against a real MLflow store (SQLite in a temp folder): the experiment's kind for the MLflow UI,
the clean splits as a run's datasets."""

from __future__ import annotations

import hashlib

import mlflow
import pytest

from pipeline.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, ensure_experiment, log_png, log_split_datasets, split_datasets

SPLIT_TEXT = {"train": '{"guid": "a"}\n', "validation": '{"guid": "b"}\n', "test": '{"guid": "c"}\n{"guid": "d"}\n'}


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """A repository folder with clean splits (its MLflow store is created once for the module: about 5 s)."""
    root = tmp_path_factory.mktemp("tracking")
    clean = root / "data/clean"
    clean.mkdir(parents=True)
    for split, text in SPLIT_TEXT.items():
        (clean / f"{split}.jsonl").write_text(text, encoding="utf-8")
    return root


@pytest.fixture()
def store(repository):
    """The repository with its MLflow store active."""
    mlflow.set_tracking_uri(f"sqlite:///{repository / 'mlflow.db'}")
    yield repository
    mlflow.set_tracking_uri(None)


def test_the_experiment_opens_as_model_training_new_or_existing(store):
    created = ensure_experiment("new-one", store)
    assert mlflow.get_experiment(created).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    older = mlflow.create_experiment("made-before", artifact_location=(store / "mlartifacts").as_uri())
    assert EXPERIMENT_KIND_TAG not in mlflow.get_experiment(older).tags  # what the MLflow UI opens as GenAI
    assert ensure_experiment("made-before", store) == older
    assert mlflow.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_a_splits_dataset_digest_is_the_md5_dvc_records(store):
    datasets = split_datasets(store)
    assert [(dataset.name, context) for dataset, context in datasets] == [
        ("train", "training"), ("validation", "validation"), ("test", "testing")
    ]  # fmt: skip
    for dataset, _ in datasets:
        assert dataset.digest == hashlib.md5(SPLIT_TEXT[dataset.name].encode()).hexdigest()
        assert dataset.source.to_dict() == {"uri": f"data/clean/{dataset.name}.jsonl"}


def test_the_splits_and_a_png_are_logged_to_the_active_run(store):
    with mlflow.start_run(experiment_id=ensure_experiment("korean-sts", store)) as run:
        log_split_datasets(store, ("train", "validation"))
        log_split_datasets(store)  # the register stage's call on the best trial's run: only test is new
        log_png(b"\x89PNG\r\n\x1a\n", "plots/history.png")
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    logged = {item.dataset.name: (item.dataset.digest, {tag.key: tag.value for tag in item.tags}) for item in inputs}
    assert sorted(logged) == ["test", "train", "validation"] and len(inputs) == 3
    assert logged["test"] == (hashlib.md5(SPLIT_TEXT["test"].encode()).hexdigest(), {"mlflow.data.context": "testing"})
    assert [item.path for item in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")] == ["plots/history.png"]
