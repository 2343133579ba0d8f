"""The default model's quality table: the base encoder zero-shot vs the fine-tuned model (raw and calibrated),
on the test split (KLUE-STS dev) and the validation split (KorSTS dev), from a finished `dvc repro`.

Reads models/base, models/model and data/clean; scores through pipeline.scoring (the service's path).
Every calibration map (mse, f1) is fitted on the validation split, whatever the model installed: the validation
split chose the trial and fits the maps, so its mapped rows are optimistic.

    python bench/quality_table.py [--out bench/results/quality_table.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.calibration import calibrate
from pipeline.metrics import similarity_metrics
from pipeline.paths import BASE_DIR, CLEAN_DIR, MODEL_DIR
from pipeline.scoring import PairScorer
from pipeline.stages.evaluate import zero_shot_scorer
from pipeline.tables import read_jsonl, split_path

SPLITS = {"test": "KLUE-STS dev (test)", "validation": "KorSTS dev (validation)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL_DIR)
    parser.add_argument("--out", type=Path, default=Path("bench/results/quality_table.json"))
    args = parser.parse_args()
    tuned = PairScorer.from_folder(args.model)
    base = zero_shot_scorer(tuned.settings, BASE_DIR)
    rows, scored = [], {}
    for split in SPLITS:
        records = read_jsonl(split_path(CLEAN_DIR, split))
        pairs, gold = [(r["sentence1"], r["sentence2"]) for r in records], np.array([r["score"] for r in records])
        scored[split] = (pairs, tuned.raw_scores(pairs), gold)
    threshold = tuned.settings.threshold
    maps = {mode: calibrate(*scored["validation"][1:], mode, threshold) for mode in ("mse", "f1")}  # fitted on validation
    for split, label in SPLITS.items():
        pairs, raw, gold = scored[split]
        variants = {"zero-shot (5 x cosine)": base.score(pairs), "fine-tuned, raw": raw}
        variants |= {f"fine-tuned, `{mode}` map": calibration.apply(raw) for mode, calibration in maps.items()}
        for name, scores in variants.items():
            rows.append({"split": label, "model": name, **similarity_metrics(gold, scores, threshold)})
    print(f"| split | model | F1@{tuned.settings.threshold} | Pearson | Spearman | MSE |\n|---|---|---|---|---|---|")
    for row in rows:
        figures = " | ".join(f"{row[key]:.3f}" for key in ("f1", "pearson", "spearman", "mse"))
        print(f"| {row['split']} | {row['model']} | {figures} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"rows": rows, "calibration": tuned.calibration.reason if tuned.calibration else None}, indent=2) + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
