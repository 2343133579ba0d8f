"""Stage evaluate: score the test split with the trained model; metrics overall and per source, plots data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import load_params
from pipeline.errors import run_stage
from pipeline.heads import head_named
from pipeline.metrics import metrics_by_source, similarity_metrics
from pipeline.paths import BASE_DIR, CLEAN_DIR, METRICS, MODEL_DIR, PREDICTIONS
from pipeline.scoring import PairScorer
from pipeline.tables import atomic_write_text, read_jsonl, split_path, write_json

ZERO_SHOT_HEAD = "bi"  # a plain encoder scores pairs as 5 x the cosine of its mean-pooled embeddings


def evaluation_report(records: list[dict[str, Any]], predicted: np.ndarray, threshold: float) -> dict[str, Any]:
    """Headline metrics on all pairs, then per source."""
    gold = [record["score"] for record in records]
    sources = [record["source"] for record in records]
    return {
        "test": similarity_metrics(gold, predicted, threshold),
        "by_source": metrics_by_source(gold, predicted, sources, threshold),
        "threshold": threshold,
    }


def predictions_table(records: list[dict[str, Any]], predicted: np.ndarray, threshold: float, tokens: tuple[list, list]):
    """One row per pair for error analysis and the DVC plots (scatter and confusion at the threshold); tokens: how
    many tokens the model read for sentence 1 and sentence 2."""
    import pandas as pd

    table = pd.DataFrame(
        {
            "guid": [r["guid"] for r in records],
            "source": [r["source"] for r in records],
            "sentence1": [r["sentence1"] for r in records],
            "sentence2": [r["sentence2"] for r in records],
            "score": [r["score"] for r in records],
            "predicted": np.round(predicted, 4),
        }
    )
    table["binary"] = np.where(table["score"] >= threshold, "similar", "not similar")
    table["predicted_binary"] = np.where(table["predicted"] >= threshold, "similar", "not similar")
    table["abs_error"] = (table["predicted"] - table["score"]).abs().round(4)
    table["tokens1"], table["tokens2"] = tokens
    return table


def calibration_report(scorer: PairScorer, gold: list[float], raw: np.ndarray, threshold: float) -> dict[str, Any]:
    """F1 at the threshold and MSE with and without the model's calibration (raw only when it has none)."""
    report: dict[str, Any] = {"applied": False, "raw": similarity_metrics(gold, raw, threshold)}
    if scorer.calibration is not None:
        report.update(
            applied=scorer.calibration.applied,
            reason=scorer.calibration.reason,
            calibrated=similarity_metrics(gold, scorer.calibration.apply(raw), threshold),
        )
    return report


def zero_shot_scorer(settings, base_folder: Path) -> PairScorer:
    """The base encoder before fine-tuning, as a bi-encoder (5 x cosine) with the fine-tuned model's prefix."""
    from dataclasses import replace

    return PairScorer(head_named(ZERO_SHOT_HEAD).load(base_folder), replace(settings, head=ZERO_SHOT_HEAD))


def main() -> None:
    params = load_params().evaluate
    records = read_jsonl(split_path(CLEAN_DIR, "test"))
    pairs = [(r["sentence1"], r["sentence2"]) for r in records]
    gold = [r["score"] for r in records]
    scorer = PairScorer.from_folder(MODEL_DIR)
    started = time.perf_counter()
    raw = scorer.raw_scores(pairs, batch_size=params.batch_size)
    seconds = time.perf_counter() - started
    predicted = scorer.calibrate(raw)
    report = evaluation_report(records, predicted, params.threshold)
    report["calibration"] = calibration_report(scorer, gold, raw, params.threshold)
    zero_shot = zero_shot_scorer(scorer.settings, BASE_DIR).score(pairs, batch_size=params.batch_size)
    report["zero_shot"] = similarity_metrics(gold, zero_shot, params.threshold)
    report["model"] = {
        "head": scorer.settings.head,
        "base_model": scorer.settings.base_model,
        "parameters": sum(parameter.numel() for parameter in scorer.model.parameters()),
    }
    report["inference"] = {
        "pairs_per_second": round(len(records) / seconds, 1),
        "device": scorer.device,
        "batch_size": params.batch_size,
    }
    tokens = (scorer.sentence_tokens([a for a, _ in pairs]), scorer.sentence_tokens([b for _, b in pairs]))
    atomic_write_text(PREDICTIONS, predictions_table(records, predicted, params.threshold, tokens).to_csv(index=False))
    write_json(METRICS, report)
    headline = report["test"]
    print(
        f"evaluate: test F1@{params.threshold} {headline['f1']}, Pearson {headline['pearson']}, "
        f"Spearman {headline['spearman']}, MSE {headline['mse']:.4f} on {headline['pairs']} pairs -> {METRICS}"
    )
    print(f"evaluate: zero-shot base model F1 {report['zero_shot']['f1']}, Pearson {report['zero_shot']['pearson']}")


if __name__ == "__main__":
    run_stage(main)
