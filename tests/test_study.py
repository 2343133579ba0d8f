"""The study's pure parts: the winner rule, the trial budget, worker environments, processes per trial."""

import os

import optuna
import pytest

from pipeline.study.budget import TrialBudget
from pipeline.study.space import pick_best_trial
from pipeline.study.workers import worker_environment
from pipeline.tracking import optuna_storage_url


def test_seed_rule_prefers_lower_loss_among_close_f1():
    def trial(number, f1, loss):
        return optuna.trial.create_trial(value=f1, params={}, distributions={}, user_attrs={"validation": {"loss": loss}}), number

    made = []
    for number, f1, loss in ((0, 0.700, 0.50), (1, 0.705, 0.60), (2, 0.650, 0.10)):
        frozen, _ = trial(number, f1, loss)
        frozen.number = number
        made.append(frozen)
    assert pick_best_trial(made, "f1", 0.01).number == 0  # within 0.01 of the top F1, lower loss wins
    assert pick_best_trial(made, "f1", 0.0).number == 1
    assert pick_best_trial(made, "pearson", 0.01).number == 1


def test_environment_overrides_the_study_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert optuna_storage_url("sqlite:///ignored.db", tmp_path) == os.environ["OPTUNA_STORAGE"]


def test_each_local_worker_gets_its_own_gpus_or_its_share_of_the_cores():
    assert worker_environment(1, 4, 4, 1, {"A": "1"}) == {"A": "1", "CUDA_VISIBLE_DEVICES": "1"}
    assert worker_environment(5, 4, 6, 1, {})["CUDA_VISIBLE_DEVICES"] == "1"  # more workers than GPUs: shared
    assert worker_environment(1, 4, 2, 1, {})["CUDA_VISIBLE_DEVICES"] == "2,3"  # fewer: a slice each
    assert worker_environment(1, 1, 2, 1, {}) == {}  # one GPU: shared, torch's own threads
    assert worker_environment(1, 4, 2, 1, {"CUDA_VISIBLE_DEVICES": "0"})["CUDA_VISIBLE_DEVICES"] == "0"  # user's choice
    assert worker_environment(1, 0, 2, 3, {}) == {"OMP_NUM_THREADS": "3"}  # CPU: its share of the cores
    assert worker_environment(1, 0, 2, 3, {"OMP_NUM_THREADS": "8"}) == {"OMP_NUM_THREADS": "8"}


def test_a_worker_started_by_a_torchrun_rank_does_not_inherit_the_rank():
    rank = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "x"}
    environment = worker_environment(1, 0, 2, 3, {**rank, "OMP_NUM_THREADS": "1", "PATH": "/bin"})
    assert environment == {"PATH": "/bin", "OMP_NUM_THREADS": "3"}  # the rank's thread share is not the worker's


@pytest.mark.parametrize(
    ("setting", "gpus", "workers", "processes"),
    [
        ("auto", 0, 1, 1),  # CPU: one process unless asked
        ("auto", 1, 1, 1),
        ("auto", 4, 1, 4),  # every GPU trains each trial
        ("auto", 4, 2, 2),  # two workers: two GPUs each
        ("auto", 2, 4, 1),  # more workers than GPUs: one each, shared
        (2, 0, 1, 2),  # two gloo processes on CPU
        (2, 4, 2, 2),
        (1, 8, 1, 1),
    ],
)
def test_processes_per_trial(setting, gpus, workers, processes):
    from pipeline.distributed import processes_per_trial

    assert processes_per_trial(setting, gpus, workers) == processes


def test_more_data_parallel_processes_than_gpus_is_a_clear_error():
    from pipeline.distributed import processes_per_trial
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.data_parallel 2 x study.workers 2 needs 4 GPUs; this runner has 2"):
        processes_per_trial(2, 2, 2)


def test_worker_shares_add_up_to_the_missing_trials():
    for target in range(1, 9):
        for finished in range(0, 10):
            for workers in range(1, 5):
                budget = TrialBudget(target, finished, workers)
                shares = [budget.quota(index) for index in range(budget.worker_count)]
                assert sum(shares) == budget.missing == max(0, target - finished)
                assert budget.complete == (finished >= target) and budget.worker_count <= workers
                assert not shares or (max(shares) - min(shares) <= 1 and min(shares) >= 1)
