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

import pytest
import yaml

from tests.conftest import OFFLINE_ENV, REPO, copy_repository
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
        "test_distributions.json",
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
    assert table.returncode == 0 and "chosen trial" in table.stdout and "served: korean_sts:" in table.stdout, table.stderr
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


def test_a_second_repro_is_a_noop(reproduced):
    repo, *_ = reproduced
    lock = (repo / "dvc.lock").read_text(encoding="utf-8")
    second = dvc(repo, "repro")
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout
    assert (repo / "dvc.lock").read_text(encoding="utf-8") == lock


def test_a_param_change_reruns_only_the_stages_that_read_it(reproduced):
    repo, *_ = reproduced
    set_params(repo, evaluate={"threshold": 3.5})  # an evaluate param: nothing upstream of evaluate reruns
    third = dvc(repo, "repro")
    assert third.returncode == 0, third.stderr
    # register logs a new version (the champion stays), so package rebuilds the Bento around the same model
    assert stages_run(third) == ["evaluate", "analyze", "register", "package"]
    assert json.loads((repo / "reports/metrics.json").read_text(encoding="utf-8"))["threshold"] == 3.5
    register = json.loads((repo / "reports/register.json").read_text(encoding="utf-8"))
    assert register["version"] == "2" and register["champion_uri"] == "models:/korean-sts-similarity@champion"


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
