"""NLI triplets from the mirror (KorNLI's XNLI dev/test, KLUE-NLI dev) for multi-task training of the bi head.

Each premise in these files comes with an entailed, a neutral and a contradicting hypothesis; a triplet is
(anchor = premise, positive = the entailed one, negative = the contradicting one), what
MultipleNegativesRankingLoss trains on: how the strongest Korean sentence encoders were trained (KorNLI + KorSTS).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.errors import DataError
from serving.text import normalize_text

NLI = "nli"  # the triplets' table name, beside the STS splits (data/raw/nli.jsonl, data/clean/nli.jsonl)
KORNLI_FILES = ("kornli/xnli.dev.ko.tsv", "kornli/xnli.test.ko.tsv")
KLUE_NLI = "klue-nli/klue-nli-v1.1_dev.json"
TRIPLET_COLUMNS = ("anchor", "positive", "negative")
LABELS = ("entailment", "neutral", "contradiction")
SOURCES = ("kornli", "klue-nli")  # train.nli_sources: a triplet's source is one of these, or starts with "<it>/"


def from_sources(source: str, wanted: list[str]) -> bool:
    """Whether a triplet's source (kornli/xnli.dev.ko.tsv, klue-nli) belongs to one of the wanted sources."""
    return source.split("/", 1)[0] in wanted


def kornli_pairs(path: Path) -> list[tuple[str, str, str, str]]:
    """(premise, hypothesis, label, origin) rows of a KorNLI TSV (sentence1, sentence2, gold_label)."""
    rows = []
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            reader = csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None or header[:3] != ["sentence1", "sentence2", "gold_label"]:
                raise DataError(f"{path}: expected the header sentence1, sentence2, gold_label, got {header}")
            for number, row in enumerate(reader, start=2):
                if len(row) < 3:
                    raise DataError(f"{path}:{number}: expected 3 tab-separated fields, got {len(row)}")
                rows.append((row[0], row[1], row[2], f"{path}:{number}"))
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from error
    return rows


def klue_nli_pairs(path: Path) -> list[tuple[str, str, str, str]]:
    """(premise, hypothesis, label, origin) rows of the KLUE-NLI release file (a JSON array)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a valid UTF-8 JSON file ({error})") from error
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON array of KLUE-NLI rows")
    pairs = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(key), str) for key in ("premise", "hypothesis", "gold_label")):
            raise DataError(f"{path}[{index}]: expected premise, hypothesis and gold_label as text")
        pairs.append((row["premise"], row["hypothesis"], row["gold_label"], f"{path}[{index}]"))
    return pairs


def triplets_from_pairs(pairs: Iterable[tuple[str, str, str, str]], source: str) -> list[dict[str, Any]]:
    """One triplet per premise that has both an entailed and a contradicting hypothesis (first of each kept)."""
    by_premise: dict[str, dict[str, tuple[str, str]]] = {}
    for premise, hypothesis, label, origin in pairs:
        if label not in LABELS:
            raise DataError(f"{origin}: gold_label {label!r} is not one of {list(LABELS)}")
        by_premise.setdefault(premise, {}).setdefault(label, (hypothesis, origin))
    return [
        {
            "guid": f"{source}-{index:05d}",
            "source": source,
            "anchor": premise,
            "positive": labels["entailment"][0],
            "negative": labels["contradiction"][0],
            "origin": labels["entailment"][1],
        }
        for index, (premise, labels) in enumerate(by_premise.items())
        if "entailment" in labels and "contradiction" in labels
    ]


def mirror_triplets(mirror_dir: Path) -> list[dict[str, Any]]:
    """Every NLI triplet the mirror holds: KorNLI (XNLI dev and test) and KLUE-NLI dev."""
    triplets = []
    for name in KORNLI_FILES:
        path = mirror_dir / name
        if not path.is_file():
            raise DataError(f"{path}: not found (check data.mirror_dir in params.yaml)")
        triplets += triplets_from_pairs(kornli_pairs(path), f"{SOURCES[0]}/{Path(name).name}")
    path = mirror_dir / KLUE_NLI
    if not path.is_file():
        raise DataError(f"{path}: not found (check data.mirror_dir in params.yaml)")
    return triplets + triplets_from_pairs(klue_nli_pairs(path), SOURCES[1])


def clean_triplets(
    records: list[dict[str, Any]], hangul_only: bool, held_out: set[str]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Normalize as the STS pairs are; drop triplets with an empty sentence, repeats, and any that share a
    sentence with the held-out (test) pairs, so multi-task training cannot see a test sentence."""
    kept, seen = [], set()
    empty = overlapping = duplicates = 0
    for record in records:
        sentences = tuple(normalize_text(record[column], hangul_only) for column in TRIPLET_COLUMNS)
        if not all(sentences):
            empty += 1
        elif held_out.intersection(sentences):
            overlapping += 1
        elif sentences in seen:
            duplicates += 1
        else:
            seen.add(sentences)
            kept.append({**record, **dict(zip(TRIPLET_COLUMNS, sentences, strict=True))})
    counts = {
        "rows_in": len(records),
        "empty_dropped": empty,
        "test_overlap_dropped": overlapping,
        "duplicates_dropped": duplicates,
        "rows_out": len(kept),
    }
    return kept, counts
