"""The registry side of promotion: score the current champion again on the challenger's test pairs, and record
the decision on the version (the rules themselves: pipeline.promotion)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import PipelineError
from pipeline.promotion import ChampionDecision, decide_champion, metric_value, paired_bootstrap

if TYPE_CHECKING:
    from pipeline.config import RegisterParams

METRIC_TAG = "test_{metric}"
DECISION_TAG = "champion.decision"


@dataclass(frozen=True)
class TestPairs:
    """The challenger's test pairs as evaluate scored them (reports/predictions.csv)."""

    pairs: list[tuple[str, str]]
    gold: np.ndarray
    predicted: np.ndarray


def read_test_pairs(path: Path) -> TestPairs:
    """The pairs, gold scores and the challenger's scores from evaluate's predictions table."""
    import pandas as pd

    try:
        table = pd.read_csv(path, keep_default_na=False)
        pairs = list(zip(table["sentence1"].astype(str), table["sentence2"].astype(str), strict=True))
        gold, predicted = table["score"].to_numpy(dtype=np.float64), table["predicted"].to_numpy(dtype=np.float64)
    except (OSError, KeyError, ValueError) as error:
        raise PipelineError(f"{path}: cannot read the test predictions ({error}); rerun evaluate") from error
    return TestPairs(pairs, gold, predicted)


def rescore_version(model_name: str, version: str, pairs: list[tuple[str, str]]) -> tuple[np.ndarray | None, str | None]:
    """(scores, None) of a registered version on pairs, its files verified first; (None, why) when it cannot be."""
    from pipeline.registry import download_verified
    from pipeline.scoring import PairScorer

    with tempfile.TemporaryDirectory(prefix="champion-") as staging:
        try:
            folder = download_verified(model_name, version, Path(staging) / "model")
            return PairScorer.from_folder(folder).score(pairs), None
        except PipelineError as error:
            return None, str(error)


def compare_with_champion(register: RegisterParams, champion: str | None, version: str, test: TestPairs, threshold: float):
    """The decision for `version` against the alias holder, re-scored on the challenger's pairs at the threshold."""
    new_value = metric_value(register.metric, test.gold, test.predicted, threshold)
    if champion == version:
        return ChampionDecision(True, f"v{version} holds the alias already (identical files)", new_value, champion)
    if champion is None:
        return decide_champion(new_value, None, None, None)
    scores, refusal = rescore_version(register.model_name, champion, test.pairs)
    comparison = None
    if scores is not None:
        comparison = paired_bootstrap(
            test.gold, test.predicted, scores, register.metric, threshold, register.bootstrap_samples, register.confidence
        )
    return decide_champion(new_value, champion, comparison, refusal)


def decision_tags(register: RegisterParams, decision: ChampionDecision, latency: dict[str, Any]) -> dict[str, str]:
    """What the version records about its decision: the metric, the comparison and its interval, the latency."""
    tags = {METRIC_TAG.format(metric=register.metric): str(decision.new_value), DECISION_TAG: decision.reason}
    comparison = decision.comparison
    if comparison is not None:
        tags.update(
            {
                "champion.compared_with": f"v{decision.current_version}",
                f"champion.rescored_{comparison.metric}": f"{comparison.champion:.6f}",
                "champion.interval": f"[{comparison.low:.6f}, {comparison.high:.6f}]",
                "champion.interval_confidence": f"{comparison.confidence:g}",
                "champion.test_pairs": str(comparison.pairs),
                "champion.threshold": f"{comparison.threshold:g}",
            }
        )
    tags.update({f"latency.{key}": str(value) for key, value in latency.items()})
    return tags


def record_decision(register: RegisterParams, version: str, decision: ChampionDecision, latency: dict[str, Any]) -> None:
    """Tag the version with its decision, then move the alias if it won."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in decision_tags(register, decision, latency).items():
        client.set_model_version_tag(register.model_name, version, key, value)
    if decision.promote:
        client.set_registered_model_alias(register.model_name, register.alias, version)
