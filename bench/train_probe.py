"""One fine-tuning run beside the pipeline, for trade-off tables: params.yaml's `train` values with overrides,
on the pipeline's own data/clean and models/base (after `dvc repro tokenize`). Reports the validation and test
figures raw and under every calibration mode (each map fitted on validation only, as the train stage does).

    python bench/train_probe.py NAME [--set key=value ...]      e.g. --set max_train_pairs=null nli_triplets=null
                                                                     --set loss=cosent nli_sources=[klue-nli]

Writes bench/results/train_probe/NAME.json (the figures, the seconds, the overrides) and keeps the raw scores
(NAME.npz, not the model) so that other maps can be tried without training again. One run per call: compare on one seed
only where the difference is above the seed noise (docs/models-and-heads.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.calibration import CHOICES, calibrate
from pipeline.config import load_params
from pipeline.finetune import finetune
from pipeline.heads import check_head_params, save_pair_model
from pipeline.metrics import similarity_metrics
from pipeline.paths import BASE_DIR, CLEAN_DIR
from pipeline.scoring import PairScorer
from pipeline.study.runner import nli_triplets
from pipeline.tables import read_jsonl, split_path
from serving.pair_model import ModelSettings

RESULTS = Path("bench/results/train_probe")


def split_scores(scorer: PairScorer, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The model's raw scores and the gold scores of one clean split."""
    records = read_jsonl(split_path(CLEAN_DIR, split))
    raw = scorer.raw_scores([(r["sentence1"], r["sentence2"]) for r in records])
    return raw, np.array([r["score"] for r in records], dtype=np.float64)


def calibration_table(scores: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float, seed: int) -> dict:
    """Per mode: the map fitted on validation, its validation (in-sample) and test figures."""
    table = {}
    for choice in CHOICES:
        calibration = calibrate(*scores["validation"], choice, threshold, seed)
        table[choice] = {
            "mode": calibration.validation["mode"],
            **{split: similarity_metrics(gold, calibration.apply(raw), threshold) for split, (raw, gold) in scores.items()},
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="train.<KEY> overrides (YAML values)")
    args = parser.parse_args()
    params = load_params()
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    train = params.train.model_validate({**params.train.model_dump(), **overrides})
    params = params.model_copy(update={"train": train, "refit": params.refit.model_copy(update={"enabled": False})})
    head = check_head_params(params.model, train)
    started = time.perf_counter()
    model, result = finetune(
        str(BASE_DIR), params.model, head.training_pairs(params.model, params.model.name), train,
        params.evaluate.threshold, quiet=True, nli=nli_triplets(params),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    write_probe(args.name, params, model, result, seconds, {"overrides": overrides})


def probe_settings(params, head: str | None = None) -> ModelSettings:
    """The saved model's settings as the train stage writes them (head: params.model.head unless given)."""
    return ModelSettings(head=head or params.model.head, base_model=params.model.name, hangul_only=params.preprocess.hangul_only,
                         prefix=params.model.prefix, threshold=params.evaluate.threshold)  # fmt: skip


def probe_scores(model, tokenizer, settings: ModelSettings) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Raw and gold scores of validation and test through the one scoring path (the model saved, loaded, dropped)."""
    with tempfile.TemporaryDirectory(prefix="train-probe-") as folder:
        save_pair_model(model, tokenizer, settings, Path(folder) / "model")
        scorer = PairScorer.from_folder(Path(folder) / "model")
        return {split: split_scores(scorer, split) for split in ("validation", "test")}


def write_probe(name: str, params, model, result, seconds: float, extra: dict) -> dict:
    """Score the trained bi model, write RESULTS/NAME.json (+ .npz of raw scores) and print the figures."""
    scores = probe_scores(model, None, probe_settings(params))
    RESULTS.mkdir(parents=True, exist_ok=True)
    arrays = {f"{split}_{kind}": value for split, (raw, gold) in scores.items() for kind, value in (("raw", raw), ("gold", gold))}
    np.savez(RESULTS / f"{name}.npz", **arrays)
    report = {
        "name": name, **extra, "train_seconds": round(seconds, 1), "train_pairs": result.train_pairs,
        "nli_triplets": result.nli_triplets,
        "calibration": calibration_table(scores, params.evaluate.threshold, params.train.seed),
    }  # fmt: skip
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for choice, figures in report["calibration"].items():
        test = figures["test"]
        print(f"{name} {choice:>4} ({figures['mode']}): test F1 {test['f1']:.4f} Pearson {test['pearson']:.4f} "
              f"Spearman {test['spearman']:.4f}; validation Pearson {figures['validation']['pearson']:.4f}")  # fmt: skip
    print(f"{seconds:.0f} s, {result.train_pairs} pairs, {result.nli_triplets} NLI triplets -> {RESULTS / name}.json")
    return report


if __name__ == "__main__":
    main()
