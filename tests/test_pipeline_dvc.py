"""The real pipeline through `dvc repro` in a temporary git repository, offline, on a tiny model.

Named scenarios on one reproduced repository: the first repro, a no-op repro, a param change, push/pull;
then bad source files.
"""

import json
import os
import random
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.metrics import f1_at
from pipeline.mlflow_ui import TRAINING_VIEW
from pipeline.paths import PLOTS_TEMPLATE
from serving.ports import free_local_port
from tests.conftest import OFFLINE_ENV, REPO, copy_repository, running_server
from tests.support.browser import headless_chromium, keep_screenshot
from tests.support.crash import kill_stage, leftovers, registry_problems, summary
from tests.support.toy_models import write_small_mirror


def _no_network_prefix() -> list[str]:
    """`unshare -n` runs the command with no network at all, where this user may (root in CI)."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


def dvc_command(*args: str) -> list[str]:
    return [*_no_network_prefix(), sys.executable, "-m", "dvc", *args]


def dvc_env() -> dict[str, str]:
    """The test's environment without store URLs (the pipeline under test uses its repository's stores), offline."""
    env = {name: value for name, value in os.environ.items() if name not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    return {**env, **OFFLINE_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(dvc_command(*args), cwd=repo, env=dvc_env(), capture_output=True, text=True, timeout=900)


def set_params(repo: Path, **changes) -> None:
    """Edit params.yaml in the copy: changes like model={"name": ...}."""
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    for section, values in changes.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")


def tiny_params(repo: Path, mirror: Path, encoder: Path) -> Path:
    """Point a repository copy at the small mirror and a tiny encoder, with a two-trial study; git init it."""
    set_params(
        repo,
        data={"mirror_dir": str(mirror)},
        model={"name": str(encoder), "max_length": 64},
        train={"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "learning_rate": 1e-3},
        study={"n_trials": 2, "search": {**DEFAULT_SEARCH, "epochs": [1, 2], "learning_rate": [3e-4, 1e-3]}},
    )
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


@pytest.fixture()
def tiny_repo(repo_copy, small_mirror, tiny_bert):
    return tiny_params(repo_copy, small_mirror, tiny_bert)


STAGES = ("download", "preprocess", "base", "tokenize", "train", "evaluate", "analyze", "register", "package")
DEFAULT_SEARCH = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["study"]["search"]


def registry_client(repo: Path):
    """An MLflow client on the repository's own store."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    return mlflow.MlflowClient()


def model_md5(repo: Path) -> str:
    import hashlib

    return hashlib.md5((repo / "models/model/model.safetensors").read_bytes()).hexdigest()


def stages_run(result: subprocess.CompletedProcess) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in result.stdout]


@pytest.fixture(scope="module")
def reproduced(mirror, tiny_bert, tmp_path_factory):
    """One tiny repository after a first `dvc repro`, shared by the scenarios below (they run in file order)."""
    work = tmp_path_factory.mktemp("reproduced")
    repo = tiny_params(copy_repository(work / "repo"), write_small_mirror(mirror, work / "mirror"), tiny_bert)
    first = dvc(repo, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    return repo, work / "mirror", first


def test_repro_runs_every_stage_and_writes_every_output(reproduced):
    repo, small_mirror, first = reproduced
    assert stages_run(first) == list(STAGES)
    metrics = json.loads((repo / "reports/metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["pairs"] == 60 and metrics["threshold"] == 3.0
    assert set(metrics["test"]) == {"f1", "pearson", "spearman", "mse", "pairs"}
    test_rows = json.loads((small_mirror / "klue-sts/klue-sts-v1.1_dev.json").read_text(encoding="utf-8"))
    assert set(metrics["by_source"]) == {row["source"] for row in test_rows}
    assert sum(source["pairs"] for source in metrics["by_source"].values()) == 60
    predictions = (repo / "reports/predictions.csv").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 61 and predictions[0].startswith("guid,source,sentence1,sentence2,score,predicted")
    assert (repo / "models/model/model.safetensors").is_file()
    package = json.loads((repo / "reports/package.json").read_text(encoding="utf-8"))
    assert package["registry_version"] == "1" and package["bento"].startswith("korean_sts:")
    assert (repo / "bentoml_home/bentos/korean_sts").is_dir()
    preprocess = json.loads((repo / "reports/preprocess.json").read_text(encoding="utf-8"))
    assert preprocess["test"]["rows_out"] == 60
    shown = dvc(repo, "metrics", "show", "--json")
    assert shown.returncode == 0 and '"f1"' in shown.stdout


def test_error_analysis_model_card_and_results_table_after_repro(reproduced):
    repo, *_ = reproduced
    analysis = repo / "reports/analysis"
    assert {path.name for path in analysis.iterdir()} == {
        "by_source.csv", "by_gold_band.csv", "by_length.csv", "worst_pairs.csv", "error_analysis.md", "summary.json",
        "test_distributions.json", "calibration.png", "mae_by_length.png", "mae_by_source.png",
    }  # fmt: skip
    worst = (analysis / "worst_pairs.csv").read_text(encoding="utf-8").splitlines()
    assert len(worst) == 21 and worst[0] == "source,score,predicted,error,sentence1,sentence2"
    bands = (analysis / "by_gold_band.csv").read_text(encoding="utf-8").splitlines()
    assert sum(int(line.split(",")[1]) for line in bands[1:]) == 60  # every test pair in one gold band
    plots = dvc(repo, "plots", "show", "--json")
    assert plots.returncode == 0, plots.stderr
    for name in ("by_gold_band", "by_length", "by_source"):
        assert f"reports/analysis/{name}.csv" in plots.stdout, name
    card = (repo / "reports/model_card.md").read_text(encoding="utf-8")
    [packaged] = (repo / "bentoml_home/models").rglob("pair_model/model_card.md")
    assert packaged.read_text(encoding="utf-8") == card and "v1" in card.splitlines()[0]
    table = subprocess.run([sys.executable, "-m", "pipeline.results"], cwd=repo, env=dvc_env(), capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    assert "validation, refit of trial" in table.stdout and "served: korean_sts:" in table.stdout
    assert len(table.stdout.splitlines()) <= 20


def test_every_run_is_tagged_with_the_data_md5s_dvc_recorded(reproduced):
    import mlflow

    repo, *_ = reproduced
    stages = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    recorded = {dep["path"]: dep["md5"] for stage in ("train", "evaluate") for dep in stages[stage]["deps"]}
    lineage = {f"data.{split}.md5": recorded[f"data/clean/{split}.jsonl"] for split in ("train", "validation", "test")}
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) >= 3  # the study's parent run and its trials
    for run in runs:
        assert {key: run.data.tags.get(key) for key in lineage} == lineage, run.info.run_name


def recorded_md5s(repo: Path) -> dict[str, str]:
    """The MD5 of each clean split as dvc.lock records it (a dep of train or evaluate)."""
    stages = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    recorded = {dep["path"]: dep["md5"] for stage in ("train", "evaluate") for dep in stages[stage]["deps"]}
    return {split: recorded[f"data/clean/{split}.jsonl"] for split in ("train", "validation", "test")}


def test_trial_runs_carry_their_datasets_and_plots_and_the_registered_run_its_error_plots(reproduced):
    from mlflow import MlflowClient

    repo, *_ = reproduced
    md5 = recorded_md5s(repo)
    study = json.loads((repo / "reports/study.json").read_text(encoding="utf-8"))
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    for trial in study["trials"]:
        run = client.get_run(trial["mlflow_run_id"])
        datasets = {item.dataset.name: (item.dataset.digest, item.dataset.source) for item in run.inputs.dataset_inputs}
        assert {name: digest for name, (digest, _) in datasets.items()} == {name: md5[name] for name in datasets}
        assert {"train", "validation"} <= set(datasets), datasets
        assert "test" not in datasets  # the register stage's: it registers the refit's run
        assert json.loads(datasets["train"][1]) == {"uri": "data/clean/train.jsonl"}
        if trial["state"] == "COMPLETE":
            assert [item.path for item in client.list_artifacts(run.info.run_id, "plots")] == ["plots/validation_history.png"]
    registered = client.get_run(study["model_run_id"])  # the refit (params.yaml's refit.enabled), nested in the study
    assert registered.data.tags["korean_sts.role"] == "refit"
    assert registered.data.tags["mlflow.parentRunId"] == study["parent_run_id"]
    version = json.loads((repo / "reports/register.json").read_text(encoding="utf-8"))["version"]
    assert client.get_model_version("korean-sts-similarity", version).run_id == study["model_run_id"]
    assert "test" in {item.dataset.name for item in registered.inputs.dataset_inputs}
    images = {item.path for item in client.list_artifacts(study["model_run_id"], "error_analysis")}
    assert {"error_analysis/calibration.png", "error_analysis/mae_by_length.png", "error_analysis/mae_by_source.png"} <= images
    experiment = client.get_experiment_by_name("korean-sts")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


# A Vega chart drawn: its SVG holds marks, or its canvas has painted pixels (vega-embed may use either renderer).
DRAWN_CHARTS = """(() => Array.from(document.querySelectorAll('.vega-embed svg.marks, .vega-embed canvas.marks')).filter(mark => {
  const box = mark.getBoundingClientRect();
  if (box.width < 50 || box.height < 50) return false;
  if (mark.tagName.toLowerCase() !== 'canvas') return mark.querySelectorAll('path, text').length > 0;
  const pixels = mark.getContext('2d').getImageData(0, 0, mark.width, mark.height).data;
  return pixels.some((value, index) => index % 4 === 3 && value > 0);
}).length)()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with no network but loopback and file:// (tests/support/browser.py)."""
    with headless_chromium(tmp_path_factory.mktemp("chromedriver"), window=(1600, 1000)) as web:
        yield web


def test_the_plots_page_draws_offline_where_dvcs_own_page_stays_blank(reproduced, browser, tmp_path):
    """`make plots` (python -m pipeline.offline_plots) against DVC's default page, both opened from file:// offline."""
    repo, *_ = reproduced
    command = [*_no_network_prefix(), sys.executable, "-m", "pipeline.offline_plots", "-o", str(tmp_path / "offline")]
    offline = subprocess.run(command, cwd=repo, env=dvc_env(), capture_output=True, text=True, timeout=300)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert (repo / PLOTS_TEMPLATE).is_file()
    page = tmp_path / "offline/index.html"
    plots = page.read_text(encoding="utf-8").count("vegaEmbed('#")
    assert plots >= 6, "dvc.yaml's plots: predictions, confusion, three error-analysis tables, the training history"
    browser.open(page.as_uri())
    browser.wait_for(f"return {DRAWN_CHARTS} === {plots}", timeout=60, message=f"the offline page did not draw its {plots} plots")
    keep_screenshot(browser, tmp_path, "dvc_plots_offline.png")
    default = dvc(repo, "plots", "show", "-o", str(tmp_path / "cdn"))
    assert default.returncode == 0, default.stderr
    browser.open((tmp_path / "cdn/index.html").as_uri())
    browser.wait_for("return document.readyState === 'complete'")
    assert browser.script(f"return [typeof vegaEmbed, {DRAWN_CHARTS}]") == ["undefined", 0]  # its CDN is out of reach


@pytest.fixture(scope="module")
def mlflow_ui(reproduced, tmp_path_factory):
    """`make ui` (python -m pipeline.mlflow_ui) over the reproduced repository's store: (its printed link, its base URL)."""
    repo, *_ = reproduced
    port = free_local_port()
    log = tmp_path_factory.mktemp("mlflow-ui") / "mlflow-ui.log"
    command = [sys.executable, "-m", "pipeline.mlflow_ui", "--port", str(port)]
    with running_server("mlflow ui", command, f"http://127.0.0.1:{port}/health", log, cwd=repo, env=dvc_env()):
        prefix = "MLflow UI (training view): "
        links = [line.removeprefix(prefix) for line in log.read_text().splitlines() if line.startswith(prefix)]
        assert links, log.read_text()[-3000:]
        yield links[0], f"http://127.0.0.1:{port}"


EXPAND_RUN = """const link = Array.from(document.querySelectorAll('a')).find(a => a.innerText.trim() === arguments[0]);
const button = link && (link.closest('.ag-cell-value') || link.parentElement).querySelector('button');
if (button) button.click();
return Boolean(button);"""
CLOSE_ASSISTANT = """const close = document.querySelector('button[data-component-id="mlflow.assistant.chat_panel.close"]');
if (close) close.click();"""  # MLflow's assistant panel opens by itself on a first visit and hides half the page


def test_the_mlflow_ui_link_opens_the_study_as_training_runs_with_their_datasets(reproduced, mlflow_ui, browser, tmp_path):
    repo, *_ = reproduced
    link, base = mlflow_ui
    study = json.loads((repo / "reports/study.json").read_text(encoding="utf-8"))
    assert link.startswith(f"{base}/#/experiments/") and link.endswith("/runs?workflowType=machine_learning")
    browser.open(link)
    browser.wait_for_text([study["study_name"], "Model training", "Dataset"], what="the experiment's runs table")
    browser.script(CLOSE_ASSISTANT)
    assert browser.script(EXPAND_RUN, study["study_name"]), "no expand button beside the study's run"
    md5 = recorded_md5s(repo)
    trials = [f"trial-{trial['number']}" for trial in study["trials"]]
    datasets = [f"train ({md5['train']})", f"validation ({md5['validation']})"]
    text = browser.wait_for_text([*trials, *datasets], what="the study's trials and their datasets")
    assert "No data available" not in text and "Usage" not in text, "the GenAI overview, not the training view"
    keep_screenshot(browser, tmp_path, "mlflow_experiment.png")


def test_the_mlflow_ui_shows_the_registered_model_with_its_champion(reproduced, mlflow_ui, browser, tmp_path):
    _, base = mlflow_ui
    browser.open(f"{base}/#/models/korean-sts-similarity?{TRAINING_VIEW}")
    browser.wait_for_text(["korean-sts-similarity", "Version 1", "champion", "Model card"], what="the registered model's page")
    browser.script(CLOSE_ASSISTANT)
    keep_screenshot(browser, tmp_path, "mlflow_registered_model.png")


def test_a_second_repro_is_a_noop(reproduced):
    repo, *_ = reproduced
    lock = (repo / "dvc.lock").read_text(encoding="utf-8")
    second = dvc(repo, "repro")
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout
    assert (repo / "dvc.lock").read_text(encoding="utf-8") == lock


def test_a_param_change_reruns_only_the_stages_that_read_it(reproduced):
    repo, *_ = reproduced
    champion_scores = pd.read_csv(repo / "reports/predictions.csv")["predicted"].to_numpy()  # v1, threshold 3.0
    set_params(repo, evaluate={"threshold": 3.5})  # train reads it too (saved with the model); nothing before train reruns
    third = dvc(repo, "repro")
    assert third.returncode == 0, third.stderr
    # a new study trains a model that carries 3.5; register logs it as a new version, package rebuilds the Bento
    assert stages_run(third) == ["train", "evaluate", "analyze", "register", "package"]
    assert json.loads((repo / "models/model/similarity.json").read_text(encoding="utf-8"))["threshold"] == 3.5
    assert json.loads((repo / "reports/metrics.json").read_text(encoding="utf-8"))["threshold"] == 3.5
    register = json.loads((repo / "reports/register.json").read_text(encoding="utf-8"))
    assert register["version"] == "2" and register["champion_uri"] == "models:/korean-sts-similarity@champion"
    assert "train: a new study" in third.stdout  # the threshold is part of the study's identity
    # v1 was scored at 3.0 when registered: the comparison scores it again on the same pairs at 3.5
    tags = registry_client(repo).get_model_version("korean-sts-similarity", "2").tags
    gold = pd.read_csv(repo / "reports/predictions.csv")["score"].to_numpy()
    assert tags["champion.compared_with"] == "v1" and tags["champion.threshold"] == "3.5"
    assert float(tags["champion.rescored_f1"]) == pytest.approx(f1_at(gold, champion_scores, 3.5), abs=1e-6)
    low, high = json.loads(tags["champion.interval"])
    assert register["decision"]["promote"] is (low > 0) and low <= high


def test_push_then_pull_brings_back_every_output(reproduced):
    """The default remote `storage` (a local path beside the repository): push, lose everything, pull it back."""
    repo, *_ = reproduced
    pushed = dvc(repo, "push")
    assert pushed.returncode == 0, pushed.stderr
    assert any((repo.parent / "dvc-storage").rglob("*"))
    model_bytes = (repo / "models/model/model.safetensors").read_bytes()
    for lost in ("models", "data", "reports", ".dvc/cache"):  # (the BentoML store is outside DVC, like mlflow.db)
        shutil.rmtree(repo / lost)
    pulled = dvc(repo, "pull")
    assert pulled.returncode == 0, pulled.stderr
    assert (repo / "models/model/model.safetensors").read_bytes() == model_bytes
    status = dvc(repo, "status")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout


def test_unchanged_inputs_reuse_the_study_and_the_registered_version(reproduced):
    """train forced to rerun with nothing changed reuses the finished study (and says so); register forced to rerun
    with identical model files reuses their version instead of logging another copy."""
    repo, *_ = reproduced
    before, versions = model_md5(repo), len(registry_client(repo).search_model_versions("name = 'korean-sts-similarity'"))
    forced = dvc(repo, "repro", "--force", "--single-item", "train")
    assert forced.returncode == 0, forced.stderr
    assert "reusing its finished trials, no training: same identity" in forced.stdout and model_md5(repo) == before
    again = dvc(repo, "repro", "--force", "--single-item", "register")
    assert again.returncode == 0, again.stderr
    assert "no new version" in again.stdout
    assert len(registry_client(repo).search_model_versions("name = 'korean-sts-similarity'")) == versions


def test_a_head_code_change_trains_a_new_study(reproduced):
    """The code the train stage imports names the study: editing a head retrains (no finished study is resumed),
    and download, preprocess and base do not rerun (they do not import the heads). Reproduced up to train, the
    stage the claim is about: the next scenario's repro brings the later stages up to date."""
    repo, *_ = reproduced
    before, study = model_md5(repo), json.loads((repo / "reports/study.json").read_text(encoding="utf-8"))["study_name"]
    head = repo / "pipeline/heads/bi_training.py"
    text = head.read_text(encoding="utf-8")
    seeding = "manual_seed(self.seed + self.epoch)"  # the length-bucketed sampler's batch order
    assert seeding in text
    head.write_text(text.replace(seeding, "manual_seed(self.seed + self.epoch + 1)"), encoding="utf-8")
    result = dvc(repo, "repro", "train")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not {"download", "preprocess", "base"} & set(stages_run(result)) and "train" in stages_run(result)
    assert "train: a new study" in result.stdout and model_md5(repo) != before
    assert json.loads((repo / "reports/study.json").read_text(encoding="utf-8"))["study_name"] != study


def test_changed_base_weights_train_a_new_study(reproduced):
    """models/base as another base stage would write it (same params): tokenize and train rerun, a new study
    (reproduced up to train, as above)."""
    from safetensors.torch import load_file, save_file

    repo, *_ = reproduced
    before = model_md5(repo)
    weights = repo / "models/base/model.safetensors"
    tensors = load_file(weights)
    name = max(tensors, key=lambda key: tensors[key].numel())  # the word embeddings (a bias may be all zeros)
    tensors[name] = tensors[name] + 0.1
    save_file(tensors, weights, metadata={"format": "pt"})
    committed = dvc(repo, "commit", "--force", "base")
    assert committed.returncode == 0, committed.stderr
    assert "models/base" not in dvc(repo, "status", "base").stdout  # recorded as base's output, as a rerun would
    result = dvc(repo, "repro", "train")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert stages_run(result) == ["tokenize", "train"]
    assert "train: a new study" in result.stdout and model_md5(repo) != before


CRASH_SEEDS = [int(seed) for seed in os.environ.get("KSTS_CRASH_SEEDS", "0").split()]  # `make crash-test`: 0 1 2
FIRST_GUESS_S = 8.0  # a kill is drawn within this many seconds of the stage's start until its real duration is known


@pytest.mark.parametrize("seed", CRASH_SEEDS)
def test_a_stage_killed_at_a_random_moment_recovers_on_the_next_repro(reproduced, seed):
    """Each stage in turn is forced to rerun and SIGKILLed at a random moment; a plain `dvc repro` must then
    complete, leave DVC clean and no temporary file or staging folder, and a registry whose every version
    downloads and whose champion loads and scores."""
    repo, *_ = reproduced
    rng = random.Random(seed)
    kills = []
    for stage in STAGES:
        window = FIRST_GUESS_S
        for _ in range(4):  # a kill drawn after the stage's end misses: draw again within its observed duration
            forced = dvc_command("repro", "--force", "--single-item", stage)
            kills.append(kill_stage(forced, repo, dvc_env(), stage, rng.uniform(0, window)))
            if kills[-1].killed:
                break
            window = kills[-1].ran_s
        assert kills[-1].killed and kills[-1].dvc_exit != 0, summary(kills)
        recovered = dvc(repo, "repro")
        assert recovered.returncode == 0, f"after killing {stage}: {recovered.stdout[-3000:]}{recovered.stderr[-3000:]}"
        status = dvc(repo, "status")
        assert "up to date" in status.stdout, f"after killing {stage}: {status.stdout}"
        assert leftovers(repo) == [], f"after killing {stage}"
        assert registry_problems(repo, "korean-sts-similarity") == [], f"after killing {stage}"
    print(f"seed {seed}: {summary(kills)}")


def test_a_full_disk_fails_the_stage_clearly_and_keeps_the_previous_outputs(reproduced):
    """A file-size limit (as a full disk would) refuses preprocess's writes: one clear line, exit 2, outputs intact."""
    repo, *_ = reproduced
    before = {path: path.read_bytes() for path in (repo / "data/clean").iterdir()}

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    done = subprocess.run(
        [sys.executable, "-m", "pipeline.stages.preprocess"],
        cwd=repo,
        env=dvc_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=small_files,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith("error: a file-size limit was hit while writing data/clean/"), done.stderr
    assert "the previous outputs are kept" in done.stderr and "Traceback" not in done.stderr
    assert {path: path.read_bytes() for path in (repo / "data/clean").iterdir()} == before
    assert leftovers(repo) == []
    assert "up to date" in dvc(repo, "status").stdout


def test_a_dvc_experiment_registers_but_does_not_move_the_alias(reproduced):
    """`dvc exp run` (DVC_EXP_NAME set) registers its model; the alias stays where it was, even with no champion
    at all (where a plain repro would promote), unless register.promote_experiments. Last: it leaves an experiment."""
    repo, *_ = reproduced
    client = registry_client(repo)
    client.delete_registered_model_alias("korean-sts-similarity", "champion")
    for command in (["add", "-A"], ["-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "commit", "-qm", "baseline"]):
        subprocess.run(["git", *command], cwd=repo, check=True, capture_output=True)
    result = dvc(repo, "exp", "run", "-S", "train.seed=11", "register")  # (package needs a champion: none here)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    register = json.loads((repo / "reports/register.json").read_text(encoding="utf-8"))
    assert not register["decision"]["promote"] and "DVC experiment" in register["decision"]["reason"]
    assert "first registration: no champion yet" in register["decision"]["reason"]  # what a plain repro would have done
    assert "champion" not in client.get_registered_model("korean-sts-similarity").aliases
    tags = client.get_model_version("korean-sts-similarity", register["version"]).tags
    assert tags["champion.decision"] == register["decision"]["reason"]


def test_bad_source_file_fails_the_stage_clearly_and_writes_nothing(tiny_repo, small_mirror):
    (small_mirror / "klue-sts/klue-sts-v1.1_dev.json").write_text('[{"guid": "x", ', encoding="utf-8")
    result = dvc(tiny_repo, "repro")
    assert result.returncode != 0
    assert "klue-sts-v1.1_dev.json: not valid JSON at line 1" in result.stderr + result.stdout
    assert not (tiny_repo / "data/raw").exists() or not any((tiny_repo / "data/raw").iterdir())
    assert not (tiny_repo / "dvc.lock").exists()


def test_out_of_range_score_stops_preprocess_naming_the_row(tiny_repo, small_mirror):
    path = small_mirror / "korsts/sts-dev.tsv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[5].split("\t")
    fields[4] = "7.5"
    lines[5] = "\t".join(fields)
    path.write_text("".join(lines), encoding="utf-8")
    result = dvc(tiny_repo, "repro")
    assert result.returncode != 0
    assert "sts-dev.tsv:6: score 7.5 is outside 0-5" in result.stderr + result.stdout
    assert not (tiny_repo / "data/clean").exists() or not any((tiny_repo / "data/clean").iterdir())
