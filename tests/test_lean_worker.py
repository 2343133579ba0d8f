"""The torch-free serving path (issue 21, item 3): what an ONNX champion's worker runs is service.py and the `serving`
package, whose imports hold no training code and no torch, transformers, sentence-transformers or scipy; its Bento
lists none of them and ships no pipeline code; in a real server its worker processes import none of them (watched by
tests/support/import_watch/sitecustomize.py) and answer as the model scores offline."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.heads import HEADS
from pipeline.models import ModelSettings
from pipeline.runtimes import RUNTIMES
from pipeline.scoring import PairScorer
from pipeline.stages.package import TORCH_RUNTIME_PACKAGES
from serving.onnx_scorer import OnnxPairScorer
from serving.pair_model import PAIR_FOLDER
from tests.conftest import REPO
from tests.support.imports import import_closure
from tests.support.toy_models import bi_pair_model
from tests.test_service import PAIRS, SERVER_ENV, bentoml_server, pair_body, post, run_python

TRAINING_STACK = ("torch", "transformers", "sentence_transformers", "scipy", "sklearn", "pandas", "mlflow", "pipeline")
WORKER_THIRD_PARTY = {"numpy", "onnxruntime", "tokenizers", "pydantic", "pydantic_core", "yaml", "starlette", "bentoml"}
IMPORT_WATCH = REPO / "tests/support/import_watch"


def top_level_imports(path: Path) -> set[str]:
    """The top-level names of what a file imports anywhere (functions included); relative ones skipped."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_worker_package_imports_no_training_code_and_only_the_lean_libraries():
    serving_modules = [".".join(path.relative_to(REPO).with_suffix("").parts) for path in (REPO / "serving").glob("*.py")]
    closure = import_closure(REPO, serving_modules)
    assert {path.parts[0] for path in closure} == {"serving"}, sorted(map(str, closure))
    third_party = set().union(*(top_level_imports(REPO / path) for path in closure)) - set(sys.stdlib_module_names)
    assert third_party - {"serving", "__future__"} <= WORKER_THIRD_PARTY, third_party
    # service.py imports neither anywhere: serving.runtime imports the torch runtime by name (a torch Bento ships it)
    assert not top_level_imports(REPO / "service.py") & {"pipeline", "torch"}


def test_exporting_is_a_capability_a_head_declares():
    exporters = {name for name, head in HEADS.items() if head.exports_onnx}
    assert exporters == {"bi"}
    for name in HEADS:
        settings = ModelSettings(head=name, base_model="x", hangul_only=False)
        assert RUNTIMES["onnx"].supports(settings) == (name in exporters) and RUNTIMES["torch"].supports(settings)


@pytest.fixture(scope="module")
def onnx_champion(tiny_bert, tmp_path_factory) -> Path:
    return bi_pair_model(tiny_bert, tmp_path_factory.mktemp("lean") / "bi", runtime="onnx")


def test_an_onnx_champions_bento_is_lean_and_its_workers_never_import_the_training_stack(onnx_champion, tmp_path):
    home = tmp_path / "home"
    code = (
        "from pipeline.stages.package import build_bento, import_pair_model\n"
        f"tag = import_pair_model({str(onnx_champion)!r}, 'lean', {{'runtime': 'onnx'}})\n"
        "print(build_bento('bentofile.yaml', '.', tag, {'runtime': 'onnx'}, torch_free=True))\n"
    )
    bento_tag = run_python(code, home, offline=True).strip().splitlines()[-1]
    bento = home / "bentos" / bento_tag.replace(":", "/")
    requirements = (bento / "env/python/requirements.txt").read_text(encoding="utf-8").lower()
    listed = {line.split("==")[0].strip() for line in requirements.splitlines() if line and not line.startswith("#")}
    assert not listed & TORCH_RUNTIME_PACKAGES and {"onnxruntime", "tokenizers", "numpy"} <= listed, listed
    shipped = {path.relative_to(bento / "src").as_posix() for path in (bento / "src").rglob("*.py")}
    assert "serving/onnx_scorer.py" in shipped and not [name for name in shipped if name.startswith("pipeline/")], shipped
    manifest = yaml.safe_load((bento / "bento.yaml").read_text(encoding="utf-8"))
    assert manifest["labels"]["runtime"] == "onnx"
    model = home / "models" / manifest["services"][0]["models"][0]["tag"].replace(":", "/") / PAIR_FOLDER
    assert (model / "onnx/model.onnx").is_file() and not list(model.rglob("*.safetensors"))  # the graph holds the weights

    log = tmp_path / "imports.log"
    watch = {
        "PYTHONPATH": str(IMPORT_WATCH),  # the Bento's own code, not the repository's
        "KSTS_TEST_IMPORT_LOG": str(log),
        "KSTS_TEST_WATCHED_IMPORTS": ",".join(["onnxruntime", *TRAINING_STACK]),
    }
    expected = OnnxPairScorer.from_folder(onnx_champion, "onnx", threads=1).score(PAIRS)
    with bentoml_server(bento_tag, home, {**SERVER_ENV, **watch}) as url:
        response = post(url, "/similarity_batch", {"pairs": [pair_body(pair) for pair in PAIRS]})
        assert response.status_code == 200 and response.headers["x-model-runtime"] == "onnx", response.text
        single = post(url, "/similarity", pair_body(PAIRS[1]))
        assert single.status_code == 200 and single.json()["score"] == pytest.approx(expected[1], abs=1e-5)
    np.testing.assert_allclose([item["score"] for item in response.json()], expected, atol=1e-5)
    np.testing.assert_allclose(expected, PairScorer.from_folder(onnx_champion).score(PAIRS), atol=1e-4)  # = torch's

    imports = [line.split(" ", 2) for line in log.read_text(encoding="utf-8").splitlines()]
    workers = {pid for pid, module, _ in imports if module == "onnxruntime"}  # the processes that loaded the model
    assert workers, "no process imported onnxruntime: the import watch did not reach the workers"
    assert not [(pid, module, argv) for pid, module, argv in imports if module in TRAINING_STACK], imports
