"""The train stage end to end on a tiny model: the Optuna study as nested MLflow runs, resumption, pruning,
killed trials, parallel workers (SQLite and PostgreSQL), data-parallel trials, broken stores."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from pipeline.config import load_params
from pipeline.errors import PipelineError
from pipeline.scoring import PairScorer
from pipeline.stages import analyze, evaluate, register, train
from pipeline.study.runner import study_name_and_tags
from pipeline.study.space import pick_best_trial
from pipeline.tables import SPLITS
from pipeline.tracking import StoreError, optuna_storage_url
from tests.conftest import REPO, running_server
from tests.support.stores import runs_of, set_section, set_study


def test_study_trials_are_nested_runs_and_the_best_model_is_kept(stage_repo):
    train.main()
    report = json.loads((stage_repo / "reports/study.json").read_text(encoding="utf-8"))
    assert [trial["number"] for trial in report["trials"]] == [0, 1, 2]
    assert all(trial["state"] == "COMPLETE" for trial in report["trials"])
    assert report["trials"][0]["params"]["learning_rate"] == 1e-3  # params.yaml's train values run first

    parents, children = runs_of(stage_repo)
    assert len(parents) == 1 and len(children) == 3
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parents[0].info.run_id}
    assert report["parent_run_id"] == parents[0].info.run_id
    for child in children:
        assert {"learning_rate", "batch_size", "weight_decay", "epochs", "warmup_ratio"} <= set(child.data.params)
        assert child.data.tags["optuna.state"] == "COMPLETE" and child.info.status == "FINISHED"
        assert child.data.tags["dvc_params_hash"] == parents[0].data.tags["dvc_params_hash"]
        assert "git_commit" in child.data.tags and "val_pearson" in child.data.metrics
    clean = stage_repo / "data/clean"
    lineage = {f"data.{split}.md5": hashlib.md5((clean / f"{split}.jsonl").read_bytes()).hexdigest() for split in SPLITS}
    for run in (*parents, *children):  # every run says which data trained it, and from which commit
        assert {key: run.data.tags.get(key) for key in lineage} == lineage
        assert run.data.tags["git.dirty"] in {"true", "false"} and "git.commit" in run.data.tags
    assert parents[0].data.tags["best_trial"] == str(report["best_trial"])
    assert report["shipped"]["run_id"] == report["model_run_id"] == report["best_run_id"]  # refit.enabled: false
    import mlflow

    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(parents[0].info.run_id, "plots")}
    assert artifacts == {"plots/optimization_history.png", "plots/param_importances.png"}

    study = optuna.load_study(study_name=report["study_name"], storage=f"sqlite:///{stage_repo / 'studies/optuna.db'}")
    rule = load_params().study  # the repository's objective (pearson), not a rule of the test's own
    assert pick_best_trial(study.get_trials(), rule.objective, rule.f1_tolerance).number == report["best_trial"]
    kept = sorted(path.name for path in (stage_repo / "studies" / report["study_name"]).iterdir())
    assert kept == [f"trial-{report['best_trial']}"]
    assert (stage_repo / "models/model/model.safetensors").is_file()


def test_the_refit_trains_the_winner_on_all_pairs_in_a_nested_run_and_is_what_ships(stage_repo):
    """Trials on a 40-pair budget; the refit of the winner on every pair and NLI triplet is the stage's output,
    one MLflow run under the study's; a rerun reuses it, a new refit budget trains a new one."""
    set_study(stage_repo, n_trials=2)
    set_section(stage_repo, "train", max_train_pairs=40)
    set_section(stage_repo, "refit", enabled=True, max_train_pairs=None, nli_triplets=None)
    train.main()
    report = json.loads((stage_repo / "reports/study.json").read_text(encoding="utf-8"))
    refit = report["refit"]
    parents, children = runs_of(stage_repo)
    [refit_run] = [run for run in children if run.data.tags.get("korean_sts.role") == "refit"]
    trials = [run for run in children if run is not refit_run]
    assert refit_run.info.run_id == refit["run_id"] == report["model_run_id"] != report["best_run_id"]
    assert report["shipped"]["run_id"] == refit["run_id"] and report["shipped"]["description"].startswith("refit of trial")
    assert refit_run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id and refit_run.info.status == "FINISHED"
    assert refit_run.data.tags["refit.of_trial"] == str(report["best_trial"]) == str(refit["trial"])
    assert parents[0].data.tags["model_run_id"] == refit["run_id"]
    train_rows = len((stage_repo / "data/clean/train.jsonl").read_text(encoding="utf-8").splitlines())
    nli_rows = len((stage_repo / "data/clean/nli.jsonl").read_text(encoding="utf-8").splitlines())
    assert {int(run.data.metrics["train_pairs"]) for run in trials} == {40}
    assert {int(run.data.metrics["train_nli_triplets"]) for run in trials} == {0}
    assert int(refit_run.data.metrics["train_pairs"]) == refit["train_pairs"] == train_rows > 40
    assert int(refit_run.data.metrics["train_nli_triplets"]) == refit["nli_triplets"] == nli_rows > 0
    best_params = {key: str(value) for key, value in report["best_params"].items()}
    assert {key: refit_run.data.params[key] for key in best_params} == best_params
    metrics = json.loads((stage_repo / "reports/train_metrics.json").read_text(encoding="utf-8"))
    assert metrics["validation"] == refit["validation"] and metrics["best_trial_validation"] == report["best_validation"]
    shipped = (stage_repo / "models/model/model.safetensors").read_bytes()
    assert shipped == (stage_repo / refit["folder"] / "model.safetensors").read_bytes()

    train.main()  # same study, winner and refit params: nothing trains again
    assert len(runs_of(stage_repo)[1]) == len(children)
    assert json.loads((stage_repo / "reports/study.json").read_text(encoding="utf-8"))["refit"] == refit

    set_section(stage_repo, "refit", nli_triplets=0)  # a new refit budget: a new refit, the old one dropped
    train.main()
    again = json.loads((stage_repo / "reports/study.json").read_text(encoding="utf-8"))["refit"]
    assert again["run_id"] != refit["run_id"] and again["nli_triplets"] == 0 and again["trial"] == refit["trial"]
    refits = sorted(path.name for path in (stage_repo / "studies" / report["study_name"]).glob("refit-*"))
    assert refits == [Path(again["folder"]).name]


def test_an_interrupted_study_resumes_to_the_requested_count(stage_repo):
    set_study(stage_repo, n_trials=2)  # trial 0: params.yaml's values; trial 1: the sampler's first draw
    train.main()
    first = json.loads((stage_repo / "reports/study.json").read_text(encoding="utf-8"))
    assert [trial["number"] for trial in first["trials"]] == [0, 1]

    set_study(stage_repo, n_trials=3)  # n_trials is not part of the study's identity: same study, resumed
    train.main()
    second = json.loads((stage_repo / "reports/study.json").read_text(encoding="utf-8"))
    assert second["study_name"] == first["study_name"]
    assert [trial["number"] for trial in second["trials"]] == [0, 1, 2]
    assert second["trials"][:2] == first["trials"]  # finished trials kept as they were
    assert second["trials"][2]["params"] != second["trials"][1]["params"]  # the resumed sampler draws anew
    parents, children = runs_of(stage_repo)
    assert len(parents) == 1 and len(children) == 3

    train.main()  # already complete: no new trial
    third = json.loads((stage_repo / "reports/study.json").read_text(encoding="utf-8"))
    assert len(third["trials"]) == 3


def test_a_pruned_trial_is_tagged_and_ended_as_killed(stage_repo):
    """A median pruner that has seen a far better first trial prunes the next trial after its first epoch."""
    set_study(stage_repo, n_trials=2, pruner="median")
    params = load_params()
    name, _ = study_name_and_tags(params, stage_repo)
    storage = optuna_storage_url(None, stage_repo)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"learning_rate": 1e-3, "batch_size": 16, "weight_decay": 1e-4, "epochs": 2, "warmup_ratio": 0.1},
            distributions={
                "learning_rate": optuna.distributions.FloatDistribution(3e-4, 1e-3, log=True),
                "batch_size": optuna.distributions.CategoricalDistribution([16, 32]),
                "weight_decay": optuna.distributions.FloatDistribution(4e-5, 1e-3, log=True),
                "epochs": optuna.distributions.IntDistribution(1, 2),
                "warmup_ratio": optuna.distributions.FloatDistribution(0.0, 0.2),
            },
            value=1.0,
            intermediate_values={1: 0.999, 2: 0.999},
            user_attrs={"validation": {"loss": 0.1, "pearson": 0.999, "spearman": 0.999, "f1": 1.0, "mse": 0.01}},
        )
    )
    with pytest.raises(PipelineError, match="no saved model"):
        train.main()  # the only complete trial is the hand-made one, which has no model folder
    _, children = runs_of(stage_repo)
    assert children and all(child.data.tags["optuna.state"] == "PRUNED" for child in children)
    assert all(child.info.status == "KILLED" for child in children)
    states = {trial.state for trial in optuna.load_study(study_name=name, storage=storage).get_trials()}
    assert optuna.trial.TrialState.PRUNED in states
    assert not (stage_repo / "models/model").exists()


def test_corrupted_stores_fail_clearly_and_are_left_as_they_were(stage_repo):
    garbage = b"this is not a database" * 10
    (stage_repo / "mlflow.db").write_bytes(garbage)
    with pytest.raises(StoreError, match=r"MLflow tracking store at .*mlflow.db is not a readable SQLite database"):
        train.main()
    assert (stage_repo / "mlflow.db").read_bytes() == garbage
    (stage_repo / "mlflow.db").unlink()
    (stage_repo / "studies").mkdir()
    (stage_repo / "studies/optuna.db").write_bytes(garbage)
    with pytest.raises(StoreError, match=r"Optuna storage at .*optuna\.db is not a readable SQLite database"):
        train.main()
    assert (stage_repo / "studies/optuna.db").read_bytes() == garbage


def test_an_unreachable_study_storage_is_a_clear_error(stage_repo, monkeypatch):
    monkeypatch.setenv("OPTUNA_STORAGE", "postgresql+psycopg2://nobody@127.0.0.1:9/none")
    with pytest.raises(PipelineError, match="cannot open Optuna study"):
        train.main()


def test_a_train_stage_killed_mid_trial_resumes_and_retries_that_trial(stage_repo):
    """SIGKILL the stage while trial 1 runs; the rerun fails it by heartbeat, retries its params, loses nothing."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    import mlflow

    set_study(stage_repo, n_trials=3, heartbeat_seconds=1)
    slower = yaml.safe_load((stage_repo / "params.yaml").read_text(encoding="utf-8"))
    slower["train"]["epochs"] = 3  # a few seconds per trial, so the kill lands inside trial 1
    slower["study"]["search"]["epochs"] = [3, 3]
    (stage_repo / "params.yaml").write_text(yaml.safe_dump(slower, sort_keys=False), encoding="utf-8")
    params = load_params()
    name, _ = study_name_and_tags(params, stage_repo)
    database = stage_repo / "studies/optuna.db"
    storage = f"sqlite:///{database}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.stages.train"],
        cwd=stage_repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    running = None
    while time.monotonic() < deadline and running is None and process.poll() is None:
        time.sleep(0.05)
        try:  # read the trials table directly: polling through optuna.load_study is too slow to catch a trial
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                states = connection.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
        except sqlite3.Error:  # the study is not created yet
            continue
        if states[:1] == [(0, "COMPLETE")]:
            running = next((number for number, state in states[1:] if state == "RUNNING"), None)
    time.sleep(1.0)  # inside the trial, past its parameter draws
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert running is not None, "the stage ended before a trial after trial 0 was seen running"

    time.sleep(3.5)  # past the grace period (3 missed heartbeats of 1 s)
    train.main()
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    killed = trials[running]
    assert killed.state.name == "FAIL"
    retries = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert killed.params and {key: retries[0].params[key] for key in killed.params} == killed.params
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 3
    assert len({t.number for t in trials}) == len(trials)

    mlflow.set_tracking_uri(f"sqlite:///{stage_repo / 'mlflow.db'}")
    killed_run = mlflow.MlflowClient().get_run(killed.user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "FAILED" and killed_run.data.tags["optuna.state"] == "FAIL"
    parents, children = runs_of(stage_repo)
    assert len(parents) == 1 and len(children) == len(trials)


def trials_by_worker(study) -> dict[str, list[int]]:
    workers: dict[str, list[int]] = {}
    for trial in study.get_trials():
        workers.setdefault(trial.user_attrs.get("worker", "?"), []).append(trial.number)
    return workers


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_study_and_one_parent_run(stage_repo, monkeypatch, request, backend):
    """study.workers: 2 -> the stage runs a second process on the same storage; N trials, N runs, one parent."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the extra worker is `python -m pipeline.stages.train --worker 1`
    storage = f"sqlite:///{stage_repo / 'studies/optuna.db'}"
    if backend == "postgresql":
        storage = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("OPTUNA_STORAGE", storage)  # as on a cluster: the workers find the storage in the environment
    set_study(stage_repo, n_trials=4, workers=2)
    train.main()
    report = json.loads((stage_repo / "reports/study.json").read_text(encoding="utf-8"))
    assert [trial["number"] for trial in report["trials"]] == [0, 1, 2, 3]
    assert all(trial["state"] == "COMPLETE" for trial in report["trials"])
    assert len({json.dumps(trial["params"], sort_keys=True) for trial in report["trials"]}) == 4
    study = optuna.load_study(study_name=report["study_name"], storage=storage)
    assert len(trials_by_worker(study)) == 2, trials_by_worker(study)  # both processes ran trials
    parents, children = runs_of(stage_repo)
    assert len(parents) == 1 and len(children) == 4
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parents[0].info.run_id}
    assert {child.data.tags["worker"] for child in children} == set(trials_by_worker(study))
    assert all(child.info.status == "FINISHED" for child in children)
    kept = sorted(path.name for path in (stage_repo / "studies" / report["study_name"]).iterdir())
    assert kept == [f"trial-{report['best_trial']}"]


@pytest.fixture()
def tracking_server(postgres_url, tmp_path):
    """`make tracking-server` (docs/scale-out.md's recipe) on a PostgreSQL backend and an artifact folder, on 127.0.0.1."""
    import psycopg2

    from serving.ports import free_local_port

    connection = psycopg2.connect(postgres_url.replace("postgresql+psycopg2", "postgresql"))
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
    connection.cursor().execute("CREATE DATABASE mlflow_server")
    connection.close()
    backend = postgres_url.rsplit("/", 1)[0] + "/mlflow_server"
    artifacts, port = tmp_path / "server-artifacts", free_local_port()
    settings = [f"MLFLOW_BACKEND={backend}", f"ARTIFACTS={artifacts}", f"PORT={port}"]
    command = ["make", "-s", "-C", str(REPO), "tracking-server", *settings]
    url = f"http://127.0.0.1:{port}"
    with running_server("make tracking-server", command, f"{url}/health", tmp_path / "tracking-server.log"):
        yield url, backend, artifacts


def test_workers_and_the_registry_share_a_tracking_server_on_postgresql(stage_repo, monkeypatch, tracking_server, postgres_url):
    """The scale-out recipe end to end: Optuna on PostgreSQL, MLflow through a server on PostgreSQL with its own
    artifact store; two workers, one parent run, the plots in the server's store, the champion in its registry."""
    import mlflow
    import psycopg2

    url, backend, artifacts = tracking_server
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OPTUNA_STORAGE", postgres_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    set_study(stage_repo, n_trials=2, workers=2, name="on-server")  # a study of its own in the session's PostgreSQL
    train.main()
    evaluate.main()
    analyze.main()
    register.main()

    mlflow.set_tracking_uri(url)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("korean-sts")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's store, not a local path
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if run.data.tags.get("korean_sts.role") == "study"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 2 and len({child.data.tags["worker"] for child in children}) == 2
    assert (artifacts / experiment.experiment_id / parents[0].info.run_id / "artifacts/plots/optimization_history.png").is_file()
    assert str(client.get_model_version_by_alias("korean-sts-similarity", "champion").version) == "1"
    with psycopg2.connect(backend.replace("postgresql+psycopg2", "postgresql")) as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] >= 3  # the runs live in PostgreSQL (register may add its own)
    assert not (stage_repo / "mlflow.db").exists() and not (stage_repo / "mlartifacts").exists()


def test_a_worker_killed_mid_trial_is_picked_up_by_the_other(stage_repo):
    """SIGKILL the extra worker inside its trial: the stage's own process fails it by heartbeat and retries it."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    import mlflow

    set_study(stage_repo, n_trials=3, workers=2, heartbeat_seconds=1)
    slower = yaml.safe_load((stage_repo / "params.yaml").read_text(encoding="utf-8"))
    slower["train"]["epochs"] = 3  # a few seconds per trial, so the kill lands inside one
    slower["study"]["search"]["epochs"] = [3, 3]
    (stage_repo / "params.yaml").write_text(yaml.safe_dump(slower, sort_keys=False), encoding="utf-8")
    database = stage_repo / "studies/optuna.db"
    stage = subprocess.Popen(
        [sys.executable, "-m", "pipeline.stages.train"],
        cwd=stage_repo,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    victim = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim is None and stage.poll() is None:
        time.sleep(0.05)
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                rows = connection.execute(
                    "SELECT t.number, a.value_json FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                    "WHERE t.state = 'RUNNING' AND a.key = 'worker'"
                ).fetchall()
        except sqlite3.Error:
            continue
        for number, worker in rows:
            pid = int(json.loads(worker).rsplit(":", 1)[1])
            if pid != stage.pid:
                victim = (number, pid)
    assert victim is not None, "no trial of the extra worker was seen running"
    time.sleep(1.0)  # inside the trial
    os.kill(victim[1], signal.SIGKILL)
    assert stage.wait(timeout=300) == 0

    params = load_params()
    name, _ = study_name_and_tags(params, stage_repo)
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{database}").get_trials()
    killed = trials[victim[0]]
    assert killed.state.name == "FAIL"
    retries = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].user_attrs["worker"] != killed.user_attrs["worker"]  # another worker picked it up
    assert {key: retries[0].params[key] for key in killed.params} == killed.params
    assert sum(t.state.name == "COMPLETE" for t in trials) == 3 and len({t.number for t in trials}) == len(trials)
    mlflow.set_tracking_uri(f"sqlite:///{stage_repo / 'mlflow.db'}")
    assert mlflow.MlflowClient().get_run(killed.user_attrs["mlflow_run_id"]).info.status == "FAILED"
    parents, children = runs_of(stage_repo)
    assert len(parents) == 1 and len(children) == len(trials)


@pytest.mark.parametrize("head", ["bi", "cross"])
def test_a_data_parallel_trial_is_trained_by_two_processes_under_one_run(stage_repo, monkeypatch, head):
    """train.data_parallel: 2 on CPU -> the stage relaunches under torchrun; each trial is trained by two gloo
    ranks (Trainer's DDP: each rank takes half of every epoch's batches); rank 0 alone talks to Optuna and MLflow."""
    import math

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the ranks are `python -m pipeline.stages.train` under torchrun
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")  # the ranks talk over loopback whatever the host name resolves to
    params = yaml.safe_load((stage_repo / "params.yaml").read_text(encoding="utf-8"))
    params["model"]["head"] = head
    params["train"]["data_parallel"] = 2
    params["study"]["n_trials"] = 2
    params["refit"].update(enabled=True, nli_triplets=0)  # the followers train the refit with the leader
    (stage_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    train.main()
    report = json.loads((stage_repo / "reports/study.json").read_text(encoding="utf-8"))
    assert [(trial["number"], trial["state"]) for trial in report["trials"]] == [(0, "COMPLETE"), (1, "COMPLETE")]
    parents, children = runs_of(stage_repo)
    assert len(parents) == 1 and len(children) == 3
    trials = [child for child in children if child.data.tags.get("korean_sts.role") != "refit"]
    assert len({child.data.tags["worker"] for child in trials}) == 1  # one leader process ran both objectives
    for child in children:  # the two trials and the refit
        assert child.data.params["data_parallel_processes"] == "2"
        pairs, batch_size = int(child.data.metrics["train_pairs"]), int(child.data.params["batch_size"])
        steps_per_epoch = child.data.metrics["train_steps"] / int(child.data.params["epochs"])
        # One process takes ceil(pairs / batch_size) steps; two take half (rounding and a dropped last batch aside).
        assert (pairs // 2) // batch_size <= steps_per_epoch <= math.ceil(math.ceil(pairs / batch_size) / 2)
    scorer = PairScorer.from_folder(stage_repo / "models/model")
    assert scorer.settings.head == head
    assert np.isfinite(scorer.score([("오늘 날씨가 좋다", "날씨가 맑다")])).all()


@pytest.mark.parametrize("argv", [["--worker", "one"], ["--worker", "1", "--trials", "x"], ["--workers", "2"]])
def test_bad_worker_arguments_exit_with_usage_and_touch_no_store(stage_repo, argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        train.main(argv)
    assert stopped.value.code == 2 and "usage: python -m pipeline.stages.train" in capsys.readouterr().err
    assert not (stage_repo / "studies/optuna.db").exists() and not (stage_repo / "mlflow.db").exists()


def test_a_run_is_dirty_when_a_tracked_file_changed_but_not_for_dvc_lock(tmp_path):
    import subprocess

    from pipeline.tracking import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    for name in ("dvc.lock", "params.yaml"):
        (tmp_path / name).write_text("a\n", encoding="utf-8")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "x")
    clean = git_commit(tmp_path)
    assert len(clean) == 40
    (tmp_path / "dvc.lock").write_text("b\n", encoding="utf-8")  # what `dvc repro` does after each stage
    assert git_commit(tmp_path) == clean
    (tmp_path / "params.yaml").write_text("b\n", encoding="utf-8")
    assert git_commit(tmp_path) == f"{clean}-dirty"


def test_the_tokenized_data_and_the_study_identity_are_the_same_in_another_clone(stage_repo, tmp_path, monkeypatch):
    import shutil

    from pipeline.digests import path_digest
    from pipeline.stages import tokenize
    from pipeline.study.identity import study_identity

    tokenized, identity = path_digest(stage_repo / "data/tokenized"), study_identity(load_params(), stage_repo)
    clone = shutil.copytree(stage_repo, tmp_path / "another" / "clone")
    monkeypatch.chdir(clone)
    for split in SPLITS:  # rewritten later, as a rerun of preprocess does
        os.utime(clone / "data/clean" / f"{split}.jsonl", (1e9, 1e9))
    tokenize.main()
    assert path_digest(clone / "data/tokenized") == tokenized
    assert study_identity(load_params(), clone).digest == identity.digest
