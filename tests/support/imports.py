"""The project's own import graph, read statically from the source (every import that runs, lazy ones too).

Used to check that dvc.yaml lists each stage's real dependencies and that the modules form no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PROJECT_PACKAGES = ("pipeline", "serving", "service")


def module_file(root: Path, module: str) -> Path | None:
    """pipeline.a.b -> pipeline/a/b.py or pipeline/a/b/__init__.py (None when it is not a project module)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def imported_modules(path: Path, package: str = "") -> set[str]:
    """Project modules a file imports anywhere (functions included), with their parent packages; not TYPE_CHECKING blocks.

    `package` is the file's package, against which relative imports resolve.
    """
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            base = ".".join(part for part in (anchor, node.module or "") if part)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules among the names
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    modules = set()
    for name in names:
        if name.split(".")[0] in PROJECT_PACKAGES:
            parts = name.split(".")
            modules.update(".".join(parts[: index + 1]) for index in range(len(parts)))
    return modules


def import_graph(root: Path) -> dict[str, set[str]]:
    """Every project module -> the project modules it imports (only those that exist as files)."""
    graph = {}
    for path in [root / "service.py", *sorted((root / "pipeline").rglob("*.py")), *sorted((root / "serving").rglob("*.py"))]:
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph[module] = {name for name in imported_modules(path, package) if module_file(root, name) and name != module}
    return graph


def import_closure(root: Path, entries: Iterable[str]) -> set[Path]:
    """The files of every project module that importing `entries` runs (relative to root)."""
    graph, seen, todo = import_graph(root), set(), list(entries)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:index]) for index in range(1, len(parts)))  # parent packages run first
        todo.extend(graph.get(module, ()))
    return {module_file(root, module).relative_to(root) for module in seen if module_file(root, module)}


def compact(files: set[Path], root: Path) -> list[str]:
    """Files as dvc.yaml deps: a package folder whose every module is in `files` is listed as the folder."""
    listed: list[str] = []
    covered: set[Path] = set()
    for package in sorted({parent for path in files for parent in path.parents if (root / parent / "__init__.py").is_file()}):
        modules = {path.relative_to(root) for path in (root / package).rglob("*.py")}
        if package.parent not in covered and modules <= files and package != Path("pipeline"):
            listed.append(package.as_posix())
            covered |= modules | {package}
    listed += sorted(path.as_posix() for path in files - covered)
    return listed


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among modules (a package importing its own submodules is not one)."""
    found, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if target.startswith(module + "."):
                continue
            if state.get(target) == "open":
                found.append([*stack[stack.index(target) :], target] if target in stack else [module, target])
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def rewrite_dvc_deps(root: Path, extra_entries: dict[str, list[str]]) -> str:
    """dvc.yaml's text with each stage's code deps replaced by its import closure (data deps and the rest kept):
    `python -c "from tests.support.imports import main; main()"` after an import changed."""
    import re

    import yaml

    text = (root / "dvc.yaml").read_text(encoding="utf-8")
    stages = yaml.safe_load(text)["stages"]
    out, stage, in_deps = [], None, False
    for line in text.splitlines():
        if match := re.fullmatch(r"  (\w+):", line):
            stage, in_deps = match.group(1), False
        if stage and line == "    deps:":
            in_deps = True
            module = re.fullmatch(r"python -m ([\w.]+)", stages[stage]["cmd"]).group(1)
            out.append(line)
            out += [f"      - {dep}" for dep in compact(import_closure(root, [module, *extra_entries.get(stage, [])]), root)]
            continue
        if in_deps and line.startswith("      - "):
            dep = line.removeprefix("      - ").split("#")[0].strip()
            if (dep.startswith(("pipeline", "serving/")) and not dep.endswith(".html")) or dep == "service.py":
                continue
        elif in_deps and not line.startswith("      "):
            in_deps = False
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> None:
    from tests.test_architecture import EXTRA_ENTRIES

    root = Path(__file__).resolve().parents[2]
    (root / "dvc.yaml").write_text(rewrite_dvc_deps(root, EXTRA_ENTRIES), encoding="utf-8")
