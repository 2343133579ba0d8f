"""Digests: SHA-256 for model integrity, provenance and the names derived from content (studies, refits, datasets),
MD5 as DVC records data files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

SKIPPED_FILES = ("__pycache__", ".pyc", ".partial", ".tmp")  # caches and staging, never an input


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in blocks."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def path_digest(path: Path) -> str:
    """MD5 over a file, or over a folder's relative paths and file MD5s (caches and staging files skipped): the
    content, wherever the folder lies."""
    if path.is_file():
        return file_digest(path, "md5")
    if not path.is_dir():
        return "missing"
    digest = hashlib.md5()
    for file in sorted(item for item in path.rglob("*") if item.is_file()):
        relative = file.relative_to(path).as_posix()
        if any(part.endswith(SKIPPED_FILES) for part in relative.split("/")):
            continue
        digest.update(f"{relative}\0{file_digest(file, 'md5')}\n".encode())
    return digest.hexdigest()


def json_digest(value: Any, length: int = 12) -> str:
    """A short SHA-256 of a JSON-able value (keys sorted; other objects as str): equal values, equal digests."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:length]
