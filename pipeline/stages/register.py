"""Stage register: log the study's best model as an MLflow pyfunc, register it (or reuse the version with
identical files), and move the champion alias to it only when it wins a fair comparison with the current
champion (pipeline.promotion: re-scored on the same test pairs, a paired bootstrap interval above 0), or when
there is none yet. A `dvc exp run` registers but leaves the alias unless register.promote_experiments."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
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
    PREDICTIONS,
    REGISTER_REPORT,
    SOURCE_RECORD,
    STUDY_REPORT,
)
from pipeline.runtimes.selection import EXAMPLE_PAIRS
from pipeline.tables import atomic_write_text, write_json


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
    flat["threshold"] = float(evaluation["threshold"])  # what the F1s count as "similar"
    flat["parameters"] = float(evaluation["model"]["parameters"])
    flat["inference_pairs_per_second"] = float(evaluation["inference"]["pairs_per_second"])
    return flat


def log_and_register(scorer, folder: Path, run_id: str, metrics: dict[str, float], name: str, serving: dict[str, Any]) -> str:
    """Log the metrics, the model folder as served (pyfunc, with its serving graph), its file hashes and its serving
    record to the best trial's run; register a new version tagged with them (package verifies and ships them)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from pipeline.registry import file_hashes, log_file_hashes, log_pair_model, log_serving_record

    example = pd.DataFrame(EXAMPLE_PAIRS, columns=["sentence1", "sentence2"])
    signature = infer_signature(example, scorer.score(EXAMPLE_PAIRS))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(metrics)
        tags = {**log_file_hashes(file_hashes(folder)), **log_serving_record(serving)}
        info = log_pair_model(folder, signature, example, {"similarity": asdict(scorer.settings)})
    return str(mlflow.register_model(info.model_uri, name, tags=tags).version)  # MLflow 3 returns an int


def register_version(params, scorer, study: dict[str, Any], evaluation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The version for models/model: the existing one with identical trained files (said), else a new one, logged with
    the runtime register chose behind the gate built into it (exported and gated here, once, against `scorer`, the torch
    model of MODEL_DIR; torch's test figures are evaluate's); and its serving record."""
    import shutil
    import tempfile

    from mlflow import MlflowClient

    from pipeline.registry import file_hashes, files_digest, log_serving_record, serving_record, version_with_files
    from pipeline.runtimes.selection import prepare_for_serving

    client, name = MlflowClient(), params.register.model_name
    digest = files_digest(file_hashes(MODEL_DIR))  # refuses pickle files before anything is logged
    existing = version_with_files(client, name, digest)
    recorded = serving_record(name, existing) if existing else None
    if existing and recorded:
        print(f"register: {MODEL_DIR} has the same trained files as {name} v{existing} (digest {digest}): no new version")
        return existing, recorded
    with tempfile.TemporaryDirectory(prefix="register-") as staging:
        folder = Path(shutil.copytree(MODEL_DIR, Path(staging) / "model"))
        serving = prepare_for_serving(folder, load_serve_settings(), scorer, evaluation["test"])  # MODEL_DIR's weights
        if existing:  # registered by a register killed before it recorded the serving build: record it now
            for key, value in log_serving_record(serving, client.get_model_version(name, existing).run_id).items():
                client.set_model_version_tag(name, existing, key, value)
            return existing, serving
        timings = {f"latency_{key}": value for key, value in serving["latency"].items() if key != "runtime"}
        metrics = run_metrics(evaluation) | timings
        return log_and_register(scorer, folder, study["model_run_id"], metrics, name, serving), serving


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
        nli_triplets=study["shipped"]["nli_triplets"],
        train_params=study["best_params"],
        validation=study["validation"],
        test=evaluation,
        highlights=json.loads(ANALYSIS_SUMMARY.read_text(encoding="utf-8"))["highlights"],
        commit=lineage["git.commit"],
        dirty=lineage["git.dirty"] == "true",
        lineage={key: value for key, value in lineage.items() if key.startswith("data.")},
        trained_on=study["shipped"]["description"],
    )
    card = model_card(facts)
    atomic_write_text(MODEL_CARD, card)
    MlflowClient().update_model_version(params.register.model_name, version, description=registry_description(card))
    with mlflow.start_run(run_id=study["model_run_id"]):
        mlflow.log_artifact(str(MODEL_CARD), artifact_path=card_artifact_folder(version))
        mlflow.log_artifacts(str(ANALYSIS_DIR), artifact_path="error_analysis")
    return card


def main() -> None:
    import mlflow
    from mlflow import MlflowClient

    from pipeline.champion import compare_with_champion, read_test_pairs, record_decision
    from pipeline.promotion import outside_experiments, within_latency_budget
    from pipeline.registry import champion_version
    from pipeline.scoring import PairScorer
    from pipeline.tracking import log_split_datasets, mlflow_tracking_uri

    params = load_params()
    register = params.register
    mlflow.set_tracking_uri(mlflow_tracking_uri(params.mlflow.tracking_uri, Path.cwd()))
    study = json.loads(STUDY_REPORT.read_text(encoding="utf-8"))
    evaluation = json.loads(METRICS.read_text(encoding="utf-8"))
    if evaluation["test"].get(register.metric) is None:
        raise PipelineError(f"{METRICS}: test {register.metric} is undefined; not registering")
    test = read_test_pairs(PREDICTIONS)
    champion = champion_version(MlflowClient(), register.model_name, register.alias)  # before anything is written
    scorer = PairScorer.from_folder(MODEL_DIR)
    version, serving = register_version(params, scorer, study, evaluation)
    latency = serving["latency"]
    publish_model_card(params, version, scorer.settings, study, evaluation)
    decision = compare_with_champion(register, champion, version, test, evaluation["threshold"])
    decision = outside_experiments(decision, os.environ.get("DVC_EXP_NAME"), register.promote_experiments)
    decision = within_latency_budget(decision, latency["p95_ms_one_pair"], register.max_p95_ms)
    record_decision(register, version, decision, latency)
    with mlflow.start_run(run_id=study["model_run_id"]):
        mlflow.set_tags({"champion.decision": decision.reason, "registered_version": version})
        log_split_datasets(Path.cwd())  # the test split too: the registered run was scored on it
    champion_now = version if decision.promote else champion
    write_json(
        REGISTER_REPORT,
        {
            "model_name": register.model_name,
            "version": version,
            "alias": register.alias,
            "champion_version": champion_now,
            "champion_uri": f"models:/{register.model_name}@{register.alias}",
            "decision": asdict(decision),
            "latency": latency,
            "serving": {key: serving[key] for key in ("runtime", "test")},
            "run_id": study["model_run_id"],
        },
    )
    print(f"register: {register.model_name} v{version}: {decision.reason}; champion is v{champion_now}")


if __name__ == "__main__":
    run_stage(main)
