"""The shape of the code: dvc.yaml deps are each stage's import closure, no import cycles, small modules,
no branching on a head's name outside pipeline/heads/, each artifact path spelled in one module."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.support.imports import compact, cycles, import_closure, import_graph

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
# Code a stage runs without importing it from its module: the registered pyfunc is logged (and loaded) from
# its file by MLflow; `bentoml build` imports the service, whose torch runtime is imported by name
# (serving.runtime.TORCH_SCORER_MODULE: a lean worker's import graph must not hold it) and ships in a torch Bento.
EXTRA_ENTRIES = {"register": ["pipeline.pyfunc_model"], "package": ["service", "pipeline.scoring"]}
MAX_MODULE_LINES = 250
MAX_FUNCTION_LINES = 50


def source_files() -> list[Path]:
    return [REPO / "service.py", *sorted((REPO / "pipeline").rglob("*.py")), *sorted((REPO / "serving").rglob("*.py"))]


def declared_python_deps(stage: dict) -> set[Path]:
    """The .py files a stage's deps cover (a folder covers every module in it)."""
    files = set()
    for dep in stage.get("deps", []):
        path = REPO / dep
        if path.is_dir():
            files |= {module.relative_to(REPO) for module in path.rglob("*.py")}
        elif dep.endswith(".py"):
            files.add(Path(dep))
    return files


@pytest.mark.parametrize("name", sorted(STAGES))
def test_dvc_deps_are_the_stages_import_closure(name):
    stage = STAGES[name]
    module = re.fullmatch(r"python -m ([\w.]+)", stage["cmd"]).group(1)
    closure = import_closure(REPO, [module, *EXTRA_ENTRIES.get(name, [])])
    declared = declared_python_deps(stage)
    missing, extra = sorted(map(str, closure - declared)), sorted(map(str, declared - closure))
    expected = "\n".join(f"      - {dep}" for dep in compact(closure, REPO))
    assert not missing and not extra, f"{name}: missing {missing}, not imported {extra}; its code deps are:\n{expected}"


def test_every_stage_module_is_a_dvc_stage_and_no_stage_imports_another():
    stage_modules = {path.stem for path in (REPO / "pipeline/stages").glob("*.py") if path.stem != "__init__"}
    assert stage_modules == set(STAGES)
    graph = import_graph(REPO)
    for stage in stage_modules:
        others = {f"pipeline.stages.{other}" for other in stage_modules - {stage}}
        assert not graph[f"pipeline.stages.{stage}"] & others, stage


def test_no_import_cycles():
    assert cycles(import_graph(REPO)) == []


def test_modules_and_functions_are_small():
    """About 250 lines a module and 50 a function; a longer function says why on its `def` line."""
    too_long = []
    for path in source_files():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {len(text.splitlines())} lines")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and "# long:" not in lines[node.lineno - 1]:
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_nothing_outside_the_heads_branches_on_a_head_name():
    branching = re.compile(r"""head\s*[!=]=\s*["']|["'](cross|mlp|bi)["']\s*[!=]=|head\s+(not\s+)?in\s*[({\[]""")
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in source_files()
        if "pipeline/heads/" not in path.as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if branching.search(line)
    ]
    assert not offenders, "\n".join(offenders)


def test_every_pipeline_output_path_is_spelled_in_one_module():
    """The outputs dvc.yaml declares appear as string literals only in pipeline/paths.py."""
    outputs = set()
    for stage in STAGES.values():
        for entry in [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]:
            outputs.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    spelled: dict[str, list[str]] = {}
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in outputs:
                spelled.setdefault(node.value, []).append(str(path.relative_to(REPO)))
    assert all(modules == ["pipeline/paths.py"] for modules in spelled.values()), spelled
    assert set(spelled) >= {"data/raw", "data/clean", "models/base", "models/model", "reports/metrics.json"}
