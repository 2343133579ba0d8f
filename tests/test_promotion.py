"""The champion rules (pure) and reading the champion from a real MLflow registry."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.promotion import ChampionDecision, decide_champion, outside_experiments, paired_bootstrap, within_latency_budget


def noisy_pairs(seed: int = 0, count: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = rng.uniform(0, 5, count)
    return gold, np.clip(gold + rng.normal(0, 1.0, count), 0, 5)


@pytest.mark.parametrize("metric", ["f1", "pearson", "spearman"])
def test_an_equally_good_model_is_within_noise(metric):
    """Two models with the same error distribution: whichever scores higher on these pairs, it is noise."""
    gold, champion = noisy_pairs()
    challenger = np.clip(gold + np.random.default_rng(1).normal(0, 1.0, len(gold)), 0, 5)  # the same noise, drawn anew
    comparison = paired_bootstrap(gold, challenger, champion, metric, 3.0, samples=500)
    assert comparison.low <= 0 <= comparison.high and comparison.pairs == len(gold)
    decision = decide_champion(comparison.challenger, "1", comparison, None)
    assert not decision.promote and "not above 0" in decision.reason and "[" in decision.reason


@pytest.mark.parametrize("metric", ["f1", "pearson", "spearman"])
def test_a_clearly_better_model_wins_beyond_noise(metric):
    gold, champion = noisy_pairs()
    challenger = np.clip(gold + np.random.default_rng(2).normal(0, 0.2, len(gold)), 0, 5)
    comparison = paired_bootstrap(gold, challenger, champion, metric, 3.0, samples=500)
    assert comparison.low > 0
    assert decide_champion(comparison.challenger, "1", comparison, None).promote


def test_the_interval_is_paired_and_seeded():
    gold, champion = noisy_pairs()
    challenger = np.clip(champion + 0.3, 0, 5)
    first, second = (paired_bootstrap(gold, challenger, champion, "f1", 3.0, samples=300, seed=5) for _ in range(2))
    assert first == second
    other_threshold = paired_bootstrap(gold, challenger, champion, "f1", 3.5, samples=300, seed=5)
    assert other_threshold.threshold == 3.5 and other_threshold.champion != first.champion


def test_first_registration_promotes_and_a_refusal_does_not():
    assert decide_champion(0.5, None, None, None).promote
    refused = decide_champion(0.9, "3", None, "cannot download models:/x/3")
    assert not refused.promote and refused.reason.startswith("not compared with champion v3: cannot download")


def test_experiments_and_the_latency_budget_keep_the_alias():
    winning = ChampionDecision(True, "beats champion v1", 0.8, "1")
    assert not outside_experiments(winning, "exp-abc12", promote_experiments=False).promote
    assert "DVC experiment exp-abc12" in outside_experiments(winning, "exp-abc12", False).reason
    assert outside_experiments(winning, "exp-abc12", promote_experiments=True).promote
    assert outside_experiments(winning, None, promote_experiments=False).promote
    assert not within_latency_budget(winning, p95_ms=50.0, budget_ms=10.0).promote
    assert within_latency_budget(winning, p95_ms=5.0, budget_ms=10.0).promote


@pytest.fixture()
def registry(tmp_path):
    """A real MLflow SQLite registry with one registered model and no alias yet."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    client.create_registered_model("m")
    return client, tmp_path / "mlflow.db"


def test_only_a_missing_model_or_alias_means_no_champion(registry):
    from pipeline.registry import champion_version

    client, _ = registry
    assert champion_version(client, "no-such-model", "champion") is None
    assert champion_version(client, "m", "champion") is None
    version = client.create_model_version("m", source="file:///nowhere")
    client.set_registered_model_alias("m", "champion", version.version)
    assert champion_version(client, "m", "champion") == "1"


def test_any_other_registry_error_fails_clearly_and_moves_nothing(registry):
    from pipeline.registry import champion_version

    client, database = registry
    version = client.create_model_version("m", source="file:///nowhere")
    client.set_registered_model_alias("m", "champion", version.version)
    with sqlite3.connect(database) as connection:
        connection.execute("ALTER TABLE registered_model_aliases RENAME TO broken_aliases")
    with pytest.raises(PipelineError, match=r"cannot read the registry's m@champion"):
        champion_version(client, "m", "champion")
    with sqlite3.connect(database) as connection:
        connection.execute("ALTER TABLE broken_aliases RENAME TO registered_model_aliases")
    assert champion_version(client, "m", "champion") == "1"
