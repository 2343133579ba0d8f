"""Stage download: the mirror's files or the Hugging Face Hub -> one normalized table per split.

Offline (source: mirror): train = KorSTS train, validation = KorSTS dev, test = KLUE-STS dev.
Either way, the NLI triplets of the mirror (pipeline.nli) for multi-task training (train.nli_triplets).
Hub (source: hub): train = KLUE-STS train minus a seeded validation slice, test = KLUE-STS validation,
plus KorSTS train from the mirror when `hub_add_korsts` is on.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.config import DataParams, load_params, resolve_path
from pipeline.errors import DataError, run_stage
from pipeline.metrics import SIMILAR_AT
from pipeline.nli import NLI, mirror_triplets
from pipeline.paths import RAW_DIR
from pipeline.tables import SPLITS, split_path, write_jsonl

KORSTS_TRAIN = "korsts/sts-train.tsv"
KORSTS_DEV = "korsts/sts-dev.tsv"
KLUE_STS_DEV = "klue-sts/klue-sts-v1.1_dev.json"
KORSTS_COLUMNS = ("genre", "score", "sentence1", "sentence2")


def normalized_record(guid: str, source: str, sentence1: Any, sentence2: Any, score: Any, origin: str) -> dict[str, Any]:
    """The one row shape every split uses; `origin` (file:row) lets later errors name the row."""
    # KLUE's own label, kept as the data defines it; nothing reads it to decide "similar" (that is evaluate.threshold)
    binary = int(score >= SIMILAR_AT) if isinstance(score, int | float) else None
    return {
        "guid": guid,
        "source": source,
        "sentence1": sentence1,
        "sentence2": sentence2,
        "score": score,
        "binary": binary,
        "origin": origin,
    }


def _parse_score(text: str, origin: str) -> float:
    try:
        return float(text)
    except ValueError as error:
        raise DataError(f"{origin}: score {text!r} is not a number") from error


def read_korsts(path: Path) -> list[dict[str, Any]]:
    """KorSTS TSV (genre, filename, year, id, score, sentence1, sentence2) -> records."""
    records = []
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            reader = csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file, expected a KorSTS header")
            missing = [column for column in KORSTS_COLUMNS if column not in header]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing} in header {header}")
            index = {column: header.index(column) for column in KORSTS_COLUMNS}
            for row_number, row in enumerate(reader, start=2):
                origin = f"{path}:{row_number}"
                if len(row) != len(header):
                    raise DataError(f"{origin}: expected {len(header)} tab-separated fields, got {len(row)}")
                records.append(
                    normalized_record(
                        guid=f"korsts-{path.stem}-{row_number - 1:05d}",
                        source=f"korsts/{row[index['genre']]}",
                        sentence1=row[index["sentence1"]],
                        sentence2=row[index["sentence2"]],
                        score=_parse_score(row[index["score"]], origin),
                        origin=origin,
                    )
                )
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from error
    return records


def klue_records(rows: Iterable[Mapping[str, Any]], origin_prefix: str) -> list[dict[str, Any]]:
    """KLUE-STS rows (guid, source, sentence1, sentence2, labels.label) -> records."""
    records = []
    for position, row in enumerate(rows):
        origin = f"{origin_prefix}[{position}]"
        if not isinstance(row, Mapping):
            raise DataError(f"{origin}: expected an object, got {type(row).__name__}")
        labels = row.get("labels")
        score = labels.get("label") if isinstance(labels, Mapping) else None
        records.append(
            normalized_record(
                guid=row.get("guid") or f"{origin_prefix}-{position}",
                source=row.get("source") or "klue-sts",
                sentence1=row.get("sentence1"),
                sentence2=row.get("sentence2"),
                score=score,
                origin=origin,
            )
        )
    return records


def read_klue_json(path: Path) -> list[dict[str, Any]]:
    """The KLUE-STS release file (a JSON array) -> records."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON at line {error.lineno} column {error.colno} ({error.msg})") from error
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from error
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON array of KLUE-STS rows")
    return klue_records(rows, str(path))


def split_off_validation(
    records: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seeded shuffle, then the first `fraction` of rows become validation; returns (train, validation)."""
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    size = max(1, round(len(shuffled) * fraction))
    return shuffled[size:], shuffled[:size]


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: not found (check data.mirror_dir in params.yaml)")
    return path


def mirror_splits(mirror_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The offline split from the mirror's files."""
    return {
        "train": read_korsts(_require_file(mirror_dir / KORSTS_TRAIN)),
        "validation": read_korsts(_require_file(mirror_dir / KORSTS_DEV)),
        "test": read_klue_json(_require_file(mirror_dir / KLUE_STS_DEV)),
    }


def hub_splits(params: DataParams, mirror_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """KLUE-STS from the Hub (or any dataset folder of the same schema), split as the issue specifies."""
    import datasets  # heavy import, only for this source

    try:
        hub = datasets.load_dataset(params.hub_id, params.hub_config)
    except Exception as error:  # the Hub client raises many types; all mean "cannot load"
        raise DataError(f"cannot load {params.hub_id!r} config {params.hub_config!r}: {error}") from error
    for split in ("train", "validation"):
        if split not in hub:
            raise DataError(f"{params.hub_id}/{params.hub_config}: no {split!r} split (found {list(hub)})")
    prefix = f"{params.hub_id}/{params.hub_config}"
    labelled = klue_records(hub["train"], f"{prefix}:train")
    train, validation = split_off_validation(labelled, params.validation_fraction, params.seed)
    if params.hub_add_korsts:
        train += read_korsts(_require_file(mirror_dir / KORSTS_TRAIN))
    return {"train": train, "validation": validation, "test": klue_records(hub["validation"], f"{prefix}:validation")}


def build_splits(params: DataParams) -> dict[str, list[dict[str, Any]]]:
    """Dispatch on data.source."""
    mirror_dir = resolve_path(params.mirror_dir)
    if params.source == "mirror":
        return mirror_splits(mirror_dir)
    return hub_splits(params, mirror_dir)


def main() -> None:
    params = load_params().data
    splits = build_splits(params)
    triplets = mirror_triplets(resolve_path(params.mirror_dir))  # read all before writing any
    for split in SPLITS:
        write_jsonl(split_path(RAW_DIR, split), splits[split])
        print(f"download: {split}: {len(splits[split])} pairs -> {split_path(RAW_DIR, split)}")
    write_jsonl(split_path(RAW_DIR, NLI), triplets)
    print(f"download: {NLI}: {len(triplets)} triplets -> {split_path(RAW_DIR, NLI)}")


if __name__ == "__main__":
    run_stage(main)
