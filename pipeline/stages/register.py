"""Stage register: log the study's best model with mlflow.transformers, register it, and move the champion
alias to it only when it beats the current champion on the test metric (or when there is none yet)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.config import load_params, load_serve_settings
from pipeline.errors import PipelineError, run_stage
from pipeline.paths import (
    ANALYSIS_DIR,
    ANALYSIS_SUMMARY,
    BASE_DIR,
    METRICS,
    MODEL_CARD,
    MODEL_DIR,
    REGISTER_REPORT,
    SOURCE_RECORD,
    STUDY_REPORT,
)
from pipeline.tables import atomic_write_text, write_json

METRIC_TAG = "test_{metric}"
EXAMPLE_PAIRS = [
    ("오늘 날씨가 정말 좋네요.", "오늘은 날씨가 매우 좋습니다."),
    ("숙소 위치가 역에서 가까워요.", "이 정책은 내년부터 시행됩니다."),
]


@dataclass(frozen=True)
class ChampionDecision:
    """Whether the new version takes the alias, and the comparison that decided it."""

    promote: bool
    reason: str
    new_value: float
    current_version: str | None
    current_value: float | None


def decide_champion(new_value: float, current_version: str | None, current_value: float | None) -> ChampionDecision:
    """Promote on first registration, or when strictly better than the current champion."""
    if current_version is None:
        return ChampionDecision(True, "first registration: no champion yet", new_value, None, None)
    if current_value is None:
        reason = f"champion v{current_version} has no recorded test metric"
        return ChampionDecision(True, reason, new_value, current_version, None)
    better = new_value > current_value
    verdict = "beats" if better else "does not beat"
    reason = f"{verdict} champion v{current_version}: {new_value:.4f} {'>' if better else '<='} {current_value:.4f}"
    return ChampionDecision(better, reason, new_value, current_version, current_value)


def within_latency_budget(decision: ChampionDecision, p95_ms: float, budget_ms: float | None) -> ChampionDecision:
    """A model over register.max_p95_ms (one pair, the packaged runtime) never takes the alias, however good."""
    if budget_ms is None or p95_ms <= budget_ms or not decision.promote:
        return decision
    reason = f"over the latency budget: p95 {p95_ms:.1f} ms for one pair > register.max_p95_ms {budget_ms:g}"
    return replace(decision, promote=False, reason=f"{reason} (else: {decision.reason})")


def candidate_latency(folder: Path, settings) -> dict[str, Any]:
    """The latency of the model as the package stage would serve it: its runtime chosen behind the same gate on a
    copy of the folder, timed in-process with one worker's threads."""
    import shutil
    import tempfile

    import torch

    from pipeline.runtimes.latency import measure_latency
    from pipeline.runtimes.selection import choose_for_serving
    from pipeline.scoring import PairScorer

    with tempfile.TemporaryDirectory(prefix="latency-") as staging:
        copy = Path(shutil.copytree(folder, Path(staging) / "model"))
        choice = choose_for_serving(copy, settings)
        torch.set_num_threads(settings.torch_threads)
        scorer = PairScorer.from_folder(copy, runtime=choice.runtime, threads=settings.torch_threads)
        return {
            "runtime": choice.runtime,
            **measure_latency(scorer, EXAMPLE_PAIRS * 16, forward_batch_size=settings.forward_batch_size),
        }


def current_champion(client, model_name: str, alias: str, metric_tag: str) -> tuple[str | None, float | None]:
    """(version, its recorded test metric) of the model version holding the alias, or (None, None)."""
    from mlflow.exceptions import MlflowException

    try:
        holder = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None, None
    value = holder.tags.get(metric_tag)
    return str(holder.version), (float(value) if value is not None else None)


def run_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """The evaluate report as flat MLflow metrics: test_* (what the model answers), test_raw_* (before its
    calibration), zero_shot_test_* (the base encoder before fine-tuning), size and speed."""
    sections = {
        "test_": evaluation["test"],
        "test_raw_": evaluation.get("calibration", {}).get("raw", {}),
        "zero_shot_test_": evaluation.get("zero_shot", {}),
    }
    flat = {
        f"{prefix}{key}": float(value)
        for prefix, values in sections.items()
        for key, value in values.items()
        if isinstance(value, int | float)
    }
    flat["parameters"] = float(evaluation["model"]["parameters"])
    flat["inference_pairs_per_second"] = float(evaluation["inference"]["pairs_per_second"])
    return flat


def log_and_register(scorer, folder: Path, run_id: str, metrics: dict[str, float], model_name: str):
    """Log the metrics and the model folder (pyfunc) to the best trial's run; register a new version tagged with
    the SHA-256 of each of the folder's files (the package stage verifies them)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from pipeline.registry import hashes_tag, log_pair_model

    integrity = hashes_tag(folder)  # refuses pickle files before anything is logged
    example = pd.DataFrame(EXAMPLE_PAIRS, columns=["sentence1", "sentence2"])
    signature = infer_signature(example, scorer.score(EXAMPLE_PAIRS))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(metrics)
        info = log_pair_model(folder, signature, example, {"similarity": asdict(scorer.settings)})
    return mlflow.register_model(info.model_uri, model_name, tags=integrity)


def apply_champion_rule(register, version: str, new_value: float, latency: dict[str, Any]):
    """Decide (test metric, then latency budget), tag the new version with the figures, move the alias if it wins.

    Returns the decision and the version that held the alias before.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    metric_tag = METRIC_TAG.format(metric=register.metric)
    current_version, current_value = current_champion(client, register.model_name, register.alias, metric_tag)
    decision = decide_champion(new_value, current_version, current_value)
    decision = within_latency_budget(decision, latency["p95_ms_one_pair"], register.max_p95_ms)
    tags = {metric_tag: str(decision.new_value), "champion.decision": decision.reason}
    tags.update({f"latency.{key}": str(value) for key, value in latency.items()})
    for key, value in tags.items():
        client.set_model_version_tag(register.model_name, version, key, value)
    if decision.promote:
        client.set_registered_model_alias(register.model_name, register.alias, version)
    return decision, current_version


def publish_model_card(params, version: str, settings, study: dict[str, Any], evaluation: dict[str, Any]) -> str:
    """Write the version's model card: reports/model_card.md, the version's description, an artifact of its run
    (beside the error analysis)."""
    import mlflow
    from mlflow import MlflowClient

    from pipeline.model_card import CardFacts, base_licence, card_artifact_folder, model_card, registry_description
    from pipeline.tracking import lineage_tags

    lineage = lineage_tags(Path.cwd())
    facts = CardFacts(
        model_name=params.register.model_name,
        version=version,
        base_model=settings.base_model,
        base_licence=base_licence(BASE_DIR, json.loads(SOURCE_RECORD.read_text(encoding="utf-8"))),
        head=settings.head,
        data_source=params.data.source,
        korsts_added=params.data.hub_add_korsts,
        nli_triplets=params.train.nli_triplets,
        train_params=study["best_params"],
        validation=study["validation"],
        test=evaluation,
        highlights=json.loads(ANALYSIS_SUMMARY.read_text(encoding="utf-8"))["highlights"],
        commit=lineage["git.commit"],
        dirty=lineage["git.dirty"] == "true",
        lineage={key: value for key, value in lineage.items() if key.startswith("data.")},
    )
    card = model_card(facts)
    atomic_write_text(MODEL_CARD, card)
    MlflowClient().update_model_version(params.register.model_name, version, description=registry_description(card))
    with mlflow.start_run(run_id=study["best_run_id"]):
        mlflow.log_artifact(str(MODEL_CARD), artifact_path=card_artifact_folder(version))
        mlflow.log_artifacts(str(ANALYSIS_DIR), artifact_path="error_analysis")
    return card


def main() -> None:
    import mlflow

    from pipeline.scoring import PairScorer
    from pipeline.tracking import mlflow_tracking_uri

    params = load_params()
    mlflow.set_tracking_uri(mlflow_tracking_uri(params.mlflow.tracking_uri, Path.cwd()))
    study = json.loads(STUDY_REPORT.read_text(encoding="utf-8"))
    evaluation = json.loads(METRICS.read_text(encoding="utf-8"))
    test_metrics = evaluation["test"]
    metric = params.register.metric
    if test_metrics.get(metric) is None:
        raise PipelineError(f"{METRICS}: test {metric} is undefined; not registering")
    scorer = PairScorer.from_folder(MODEL_DIR)
    latency = candidate_latency(MODEL_DIR, load_serve_settings())
    latency_metrics = {f"latency_{key}": value for key, value in latency.items() if key != "runtime"}
    registered = log_and_register(
        scorer,
        MODEL_DIR,
        study["best_run_id"],
        {**run_metrics(evaluation), **latency_metrics},
        params.register.model_name,
    )
    version = str(registered.version)  # MLflow 3 returns an int
    publish_model_card(params, version, scorer.settings, study, evaluation)
    decision, current_version = apply_champion_rule(params.register, version, float(test_metrics[metric]), latency)
    with mlflow.start_run(run_id=study["best_run_id"]):
        mlflow.set_tags({"champion.decision": decision.reason, "registered_version": version})
    champion_version = version if decision.promote else current_version
    write_json(
        REGISTER_REPORT,
        {
            "model_name": params.register.model_name,
            "version": version,
            "alias": params.register.alias,
            "champion_version": champion_version,
            "champion_uri": f"models:/{params.register.model_name}@{params.register.alias}",
            "decision": asdict(decision),
            "latency": latency,
            "run_id": study["best_run_id"],
        },
    )
    print(f"register: {params.register.model_name} v{version}: {decision.reason}; champion is v{champion_version}")


if __name__ == "__main__":
    run_stage(main)
