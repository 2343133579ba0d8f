"""The register stage (champion alias, the pyfunc loads back) and make compare, on a tiny trained study."""

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import compare
from pipeline.scoring import PairScorer
from pipeline.stages import analyze, evaluate, register, train
from tests.conftest import REPO
from tests.support.stores import set_study


def test_register_sets_the_champion_alias_and_loads_it_back(stage_repo):
    import mlflow
    from mlflow import MlflowClient

    set_study(stage_repo, n_trials=1)
    train.main()
    evaluate.main()
    analyze.main()
    register.main()
    first = json.loads((stage_repo / "reports/register.json").read_text(encoding="utf-8"))
    assert first["version"] == "1" and first["champion_version"] == "1" and first["decision"]["promote"]

    mlflow.set_tracking_uri(f"sqlite:///{stage_repo / 'mlflow.db'}")
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("korean-sts-similarity", "champion").version) == "1"
    champion = PairScorer.from_registry("models:/korean-sts-similarity@champion", device="cpu")
    local = PairScorer.from_folder(stage_repo / "models/model", device="cpu")
    records = [json.loads(line) for line in (stage_repo / "data/clean/test.jsonl").read_text(encoding="utf-8").splitlines()]
    pairs = [(r["sentence1"], r["sentence2"]) for r in records]
    np.testing.assert_allclose(champion.score(pairs), local.score(pairs), atol=1e-5)
    # the registry's own serving interface scores pairs too: pyfunc over a sentence1/sentence2 frame
    import pandas as pd

    pyfunc = mlflow.pyfunc.load_model("models:/korean-sts-similarity@champion")
    frame = pd.DataFrame(pairs[:8], columns=["sentence1", "sentence2"])
    np.testing.assert_allclose(np.asarray(pyfunc.predict(frame)), local.score(pairs[:8]), atol=1e-5)
    assert pyfunc.metadata.metadata["similarity"]["head"] == local.settings.head
    best_run = client.get_run(first["run_id"])
    assert "test_f1" in best_run.data.metrics and best_run.data.tags["registered_version"] == "1"
    # the model card: the version's description, an artifact of its run beside the error analysis
    card = (stage_repo / "reports/model_card.md").read_text(encoding="utf-8")
    assert card.startswith("# Model card: korean-sts-similarity v1") and "dvc repro" in card
    assert client.get_model_version("korean-sts-similarity", "1").description == card
    logged = {item.path for item in client.list_artifacts(first["run_id"], "error_analysis")}
    assert "error_analysis/error_analysis.md" in logged
    assert mlflow.artifacts.load_text(f"runs:/{first['run_id']}/model_card/v1/model_card.md") == card

    register.main()  # the same files again: the version is reused, nothing is logged twice
    second = json.loads((stage_repo / "reports/register.json").read_text(encoding="utf-8"))
    assert second["version"] == "1" and second["champion_version"] == "1" and second["decision"]["promote"]
    assert len(client.search_model_versions("name = 'korean-sts-similarity'")) == 1
    assert len(list((stage_repo / "mlartifacts").rglob("model.safetensors"))) == 1

    compare.main()  # one (model, head) registered twice: one row, the latest run's
    report = (stage_repo / "reports/compare.md").read_text(encoding="utf-8")
    evaluation = json.loads((stage_repo / "reports/metrics.json").read_text(encoding="utf-8"))
    rows = [line for line in report.splitlines() if line.startswith(f"| {evaluation['model']['base_model']} |")]
    assert len(rows) == 2  # the fine-tuned model and its base encoder zero-shot
    assert any(f"| {evaluation['model']['head']} | {evaluation['test']['f1']:.4f} |" in row for row in rows)
    assert any(f"| zero-shot | {evaluation['zero_shot']['f1']:.4f} |" in row for row in rows)
    assert "klue/bert-base" in report  # listed as needing hub weights


def test_a_model_over_the_latency_budget_is_registered_but_not_made_champion(stage_repo):
    """register.max_p95_ms: the latency of the runtime the package stage would choose is measured and tagged;
    over budget, the version is registered, the alias does not move, and the reason is on the version."""
    import mlflow
    import yaml
    from mlflow import MlflowClient

    set_study(stage_repo, n_trials=1)
    params = yaml.safe_load((stage_repo / "params.yaml").read_text(encoding="utf-8"))
    params["register"]["max_p95_ms"] = 0.001  # no model answers in a microsecond
    (stage_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    train.main()
    evaluate.main()
    analyze.main()
    register.main()
    report = json.loads((stage_repo / "reports/register.json").read_text(encoding="utf-8"))
    assert report["champion_version"] is None and not report["decision"]["promote"]
    assert report["decision"]["reason"].startswith("over the latency budget: p95 ")
    assert report["latency"]["runtime"] in {"torch", "onnx", "onnx-int8"} and report["latency"]["p95_ms_one_pair"] > 0.001
    mlflow.set_tracking_uri(f"sqlite:///{stage_repo / 'mlflow.db'}")
    client = MlflowClient()
    version = client.get_model_version("korean-sts-similarity", "1")
    assert version.tags["champion.decision"] == report["decision"]["reason"]
    assert float(version.tags["latency.p95_ms_one_pair"]) == report["latency"]["p95_ms_one_pair"]
    assert not client.get_registered_model("korean-sts-similarity").aliases
    assert "latency_p95_ms_batch_32" in client.get_run(report["run_id"]).data.metrics


def test_a_challenger_is_compared_with_the_champion_rescored_on_its_pairs(stage_repo):
    """Another seed trains another model: it is registered as v2, the champion v1 is scored again on the same
    test pairs at the same threshold, and the alias moves only when the bootstrap interval lies above 0; the
    interval is on the version either way."""
    import mlflow
    import yaml
    from mlflow import MlflowClient

    from pipeline.metrics import f1_at

    set_study(stage_repo, n_trials=1)
    for stage in (train, evaluate, analyze, register):
        stage.main()
    import pandas as pd

    champion_scores = pd.read_csv(stage_repo / "reports/predictions.csv")["predicted"].to_numpy()
    params = yaml.safe_load((stage_repo / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["seed"] = 7
    (stage_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    for stage in (train, evaluate, analyze, register):
        stage.main()
    report = json.loads((stage_repo / "reports/register.json").read_text(encoding="utf-8"))
    mlflow.set_tracking_uri(f"sqlite:///{stage_repo / 'mlflow.db'}")
    client = MlflowClient()
    tags = client.get_model_version("korean-sts-similarity", "2").tags
    assert report["version"] == "2" and tags["champion.compared_with"] == "v1" and tags["champion.threshold"] == "3"
    table = pd.read_csv(stage_repo / "reports/predictions.csv")
    assert float(tags["champion.rescored_f1"]) == pytest.approx(f1_at(table["score"].to_numpy(), champion_scores, 3.0), abs=1e-6)
    low, high = json.loads(tags["champion.interval"])
    assert low <= high and report["decision"]["promote"] is (low > 0)
    holder = str(client.get_model_version_by_alias("korean-sts-similarity", "champion").version)
    assert holder == ("2" if low > 0 else "1") and tags["champion.decision"] == report["decision"]["reason"]


def test_package_verifies_the_recorded_file_hashes_and_refuses_pickles(stage_repo, monkeypatch):
    """register refuses a model folder with pickle weights; package refuses a champion whose files changed in the
    artifact store after registration (or gained a pickle), before anything reaches the BentoML store."""
    from mlflow import MlflowClient

    from pipeline.errors import PipelineError
    from pipeline.registry import recorded_hashes
    from pipeline.stages import package

    monkeypatch.setenv("BENTOML_HOME", str(stage_repo / "bentoml_home"))
    set_study(stage_repo, n_trials=1)
    train.main()
    evaluate.main()
    analyze.main()
    pickle = stage_repo / "models/model/pytorch_model.bin"
    pickle.write_bytes(b"\x80\x04N.")
    with pytest.raises(PipelineError, match=r"pickle files \(pytorch_model.bin\)"):
        register.main()
    pickle.unlink()
    register.main()
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{stage_repo / 'mlflow.db'}")
    recorded = recorded_hashes("korean-sts-similarity", "1")  # the run's artifact, checked against the version's digest tag
    assert "model.safetensors" in recorded and all(len(digest) == 64 for digest in recorded.values())
    assert len(MlflowClient().get_model_version("korean-sts-similarity", "1").tags["pair_model.files_digest"]) == 16

    [settings_file] = (stage_repo / "mlartifacts").rglob("similarity.json")  # the registered copy in the artifact store
    stored = settings_file.parent
    config = stored / "config.json"
    original = config.read_bytes()
    config.write_bytes(original + b" ")
    with pytest.raises(PipelineError, match=r"config\.json: SHA-256 differs"):
        package.main()
    config.write_bytes(original)
    (stored / "extra.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(PipelineError, match="pickle files"):
        package.main()
    assert not (stage_repo / "bentoml_home" / "models").exists(), "nothing reached the BentoML store"
    (stored / "extra.pkl").unlink()

    # Export and gate once: register built the runtime it chose into the registered folder and recorded the gate's
    # figures with the version; package ships exactly those files and that record, with no torch in a lean Bento.
    from pipeline.registry import serving_record
    from pipeline.runtimes import RUNTIMES
    from pipeline.stages.package import TORCH_RUNTIME_PACKAGES
    from serving.pair_model import ONNX_DIR

    record = serving_record("korean-sts-similarity", "1")
    runtime = record["runtime"]["runtime"]
    assert MlflowClient().get_model_version("korean-sts-similarity", "1").tags["serving.runtime"] == runtime
    assert record["runtime"]["gate"] and record["test"][runtime]["pairs"] > 0  # every candidate's gate figures
    evaluated = json.loads((stage_repo / "reports/metrics.json").read_text(encoding="utf-8"))["test"]
    assert record["test"]["torch"] == evaluated  # torch's test figures are evaluate's, not scored again
    graphs = {name for name in recorded if name.startswith(f"{ONNX_DIR}/")}
    assert graphs == ({f"{ONNX_DIR}/{RUNTIMES[runtime].graph}"} if RUNTIMES[runtime].torch_free else set()), graphs
    for name in ("bentofile.yaml", "service.py", "serving", "pipeline"):  # the Bento's build context: the repository's code
        (stage_repo / name).symlink_to(REPO / name)
    package.main()
    report = json.loads((stage_repo / "reports/package.json").read_text(encoding="utf-8"))
    assert report["runtime"] == record["runtime"] and report["test"] == record["test"]
    import bentoml

    model = bentoml.models.get(report["model"])
    assert model.info.labels["runtime"] == runtime
    requirements = Path(bentoml.get(report["bento"]).path_of("env/python/requirements.txt")).read_text(encoding="utf-8")
    listed = {line.split("==")[0] for line in requirements.lower().splitlines()}
    assert bool(listed & TORCH_RUNTIME_PACKAGES) != RUNTIMES[runtime].torch_free, listed


def test_a_versions_recorded_json_is_read_from_its_run_and_an_unreadable_one_is_named(tmp_path):
    """serving_record and recorded_hashes read their JSON artifacts of the version's run the same way."""
    import mlflow
    from mlflow import MlflowClient

    from pipeline.errors import PipelineError
    from pipeline.registry import FILES_ARTIFACT_TAG, FILES_DIGEST_TAG, SERVING_RECORD_TAG, recorded_hashes, serving_record

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    with mlflow.start_run(experiment_id=client.create_experiment("registry-json")) as run:  # not an earlier test's
        mlflow.log_dict({"runtime": {"runtime": "onnx"}}, "serving/runtime.json")
        mlflow.log_text("{not json", "integrity/files-0.json")
    client.create_registered_model("m")
    tags = {SERVING_RECORD_TAG: "serving/runtime.json", FILES_DIGEST_TAG: "0", FILES_ARTIFACT_TAG: "integrity/files-0.json"}
    version = client.create_model_version("m", f"runs:/{run.info.run_id}/model", run.info.run_id, tags=tags).version
    assert serving_record("m", version) == {"runtime": {"runtime": "onnx"}}
    with pytest.raises(PipelineError, match=r"^m v1: cannot read its file hashes \(integrity/files-0\.json\): "):
        recorded_hashes("m", version)
    client.set_model_version_tag("m", version, SERVING_RECORD_TAG, "serving/missing.json")
    with pytest.raises(PipelineError, match=r"^m v1: cannot read its serving record \(serving/missing\.json\): "):
        serving_record("m", version)
