"""Stage preprocess: validate every row, normalize text (NFC), drop empty and duplicate pairs."""

from __future__ import annotations

import math
from typing import Any

from pipeline.config import load_params
from pipeline.errors import DataError, run_stage
from pipeline.nli import NLI, clean_triplets
from pipeline.paths import CLEAN_DIR, PREPROCESS_REPORT, RAW_DIR
from pipeline.tables import COLUMNS, SPLITS, read_jsonl, split_path, write_json, write_jsonl
from serving.text import normalize_text


def validate_record(record: dict[str, Any]) -> None:
    """Schema and range checks; the error names the row's origin (file and row)."""
    where = record.get("origin") or record.get("guid") or "row"
    missing = [column for column in COLUMNS if record.get(column) is None]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}")
    for column in ("sentence1", "sentence2"):
        if not isinstance(record[column], str):
            raise DataError(f"{where}: {column} must be text, got {record[column]!r}")
    score = record["score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
        raise DataError(f"{where}: score {score!r} is not a number")
    if not 0.0 <= score <= 5.0:
        raise DataError(f"{where}: score {score} is outside 0-5")


def clean_split(records: list[dict[str, Any]], hangul_only: bool) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Validate, normalize, drop pairs with an empty sentence and exact duplicate pairs (first kept)."""
    kept: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    empty = duplicates = 0
    for record in records:
        validate_record(record)
        sentence1 = normalize_text(record["sentence1"], hangul_only)
        sentence2 = normalize_text(record["sentence2"], hangul_only)
        if not sentence1 or not sentence2:
            empty += 1
            continue
        if (sentence1, sentence2) in seen:
            duplicates += 1
            continue
        seen.add((sentence1, sentence2))
        kept.append({**record, "sentence1": sentence1, "sentence2": sentence2, "score": float(record["score"])})
    counts = {"rows_in": len(records), "empty_dropped": empty, "duplicates_dropped": duplicates, "rows_out": len(kept)}
    return kept, counts


def main() -> None:
    params = load_params().preprocess
    cleaned = {}
    report = {}
    for split in SPLITS:  # validate every split before writing any, so bad input leaves nothing behind
        cleaned[split], report[split] = clean_split(read_jsonl(split_path(RAW_DIR, split)), params.hangul_only)
        if not cleaned[split]:
            raise DataError(f"{split_path(RAW_DIR, split)}: no pairs left after cleaning")
    test_sentences = {record[column] for record in cleaned["test"] for column in ("sentence1", "sentence2")}
    cleaned[NLI], report[NLI] = clean_triplets(read_jsonl(split_path(RAW_DIR, NLI)), params.hangul_only, test_sentences)
    for split in (*SPLITS, NLI):
        write_jsonl(split_path(CLEAN_DIR, split), cleaned[split])
        print(f"preprocess: {split}: {report[split]}")
    write_json(PREPROCESS_REPORT, report)


if __name__ == "__main__":
    run_stage(main)
