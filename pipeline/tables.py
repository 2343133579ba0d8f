"""Split tables on disk: JSON Lines, written atomically so a failed stage leaves no half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.errors import DataError

SPLITS = ("train", "validation", "test")
COLUMNS = ("guid", "source", "sentence1", "sentence2", "score", "binary")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to path via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from error  # name the output, not the temporary file
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, value: Any) -> None:
    """Pretty JSON, UTF-8 (Korean stays readable)."""
    atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read JSON Lines; a broken line is a DataError naming file and line."""
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: not valid JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object")
            records.append(record)
    return records


def split_path(folder: str | Path, split: str) -> Path:
    """Where a split's table lives in a stage's output folder."""
    return Path(folder) / f"{split}.jsonl"


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table of the given columns (floats to 3 decimals, None as "-": undefined; pipes in text escaped)."""

    def cell(value: Any) -> str:
        text = f"{value:.3f}" if isinstance(value, float) else "-" if value is None else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
