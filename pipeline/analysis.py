"""Error analysis of the test predictions: where the model errs (by source, gold-score band, length band), how
well its scores are calibrated, the worst pairs, and the distributions a deployment compares its traffic to.

Pure functions over prediction rows (dicts with source, sentence1, sentence2, score, predicted, tokens); the
analyze stage does the I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.metrics import MAX_SCORE, SCORE_BUCKETS, TOKEN_BUCKETS

Row = dict[str, Any]
GOLD_BANDS = [(low, low + 1.0) for low in range(int(MAX_SCORE))]  # 0-1, 1-2, ..., 4-5 (5.0 falls in 4-5)


def gold_band(score: float) -> str:
    """The one-point band of a 0-5 gold score, as '0-1' ... '4-5'."""
    low = min(int(score), int(MAX_SCORE) - 1)
    return f"{low}-{low + 1}"


def length_bands(lengths: Sequence[int], count: int = 4) -> list[tuple[int, int]]:
    """Inclusive token-length bands cut at the quantiles, so each holds about 1/count of the pairs."""
    edges = sorted({int(np.quantile(lengths, q / count)) for q in range(1, count)})
    lows = [min(lengths), *(edge + 1 for edge in edges)]
    highs = [*edges, max(lengths)]
    return [(low, high) for low, high in zip(lows, highs, strict=True) if low <= high]


def band_summary(rows: Sequence[Row], threshold: float) -> dict[str, Any]:
    """Size, mean gold and predicted score, bias, MAE, MSE and the share of verdicts right at the threshold."""
    gold = np.array([row["score"] for row in rows], dtype=float)
    predicted = np.array([row["predicted"] for row in rows], dtype=float)
    if not len(gold):
        return {"pairs": 0}
    return {
        "pairs": len(gold),
        "mean_gold": round(float(gold.mean()), 4),
        "mean_predicted": round(float(predicted.mean()), 4),
        "bias": round(float((predicted - gold).mean()), 4),
        "mae": round(float(np.abs(predicted - gold).mean()), 4),
        "mse": round(float(((predicted - gold) ** 2).mean()), 4),
        "verdict_accuracy": round(float(((gold >= threshold) == (predicted >= threshold)).mean()), 4),
    }


def grouped(rows: Sequence[Row], key: Callable[[Row], str], order: Sequence[str], threshold: float) -> list[Row]:
    """band_summary per group, in the given order, each row starting with its band."""
    return [{"band": band, **band_summary([row for row in rows if key(row) == band], threshold)} for band in order]


def longer_sentence_tokens(row: Row) -> int:
    return max(row["tokens"])


def analysis_tables(rows: Sequence[Row], threshold: float) -> dict[str, list[Row]]:
    """The three tables: by source, by gold-score band (the calibration plot), by token-length band."""
    bands = length_bands([longer_sentence_tokens(row) for row in rows])

    def length_band(row: Row) -> str:
        tokens = longer_sentence_tokens(row)
        return next(f"{low}-{high}" for low, high in bands if low <= tokens <= high)

    return {
        "by_source": grouped(rows, lambda row: row["source"], sorted({row["source"] for row in rows}), threshold),
        "by_gold_band": grouped(rows, lambda row: gold_band(row["score"]), [f"{a:g}-{b:g}" for a, b in GOLD_BANDS], threshold),
        "by_length": grouped(rows, length_band, [f"{low}-{high}" for low, high in bands], threshold),
    }


def worst_pairs(rows: Sequence[Row], count: int = 20) -> list[Row]:
    """The pairs with the largest absolute error, largest first."""
    ranked = sorted(rows, key=lambda row: abs(row["predicted"] - row["score"]), reverse=True)[:count]
    keys = ("source", "score", "predicted", "sentence1", "sentence2")
    return [{**{key: row[key] for key in keys}, "error": round(row["predicted"] - row["score"], 4)} for row in ranked]


def cumulative_counts(values: Sequence[float], buckets: Sequence[float]) -> dict[str, int]:
    """Prometheus-style histogram counts: values <= each bucket's upper bound, and +Inf."""
    array = np.asarray(values, dtype=float)
    return {**{f"{bound:g}": int((array <= bound).sum()) for bound in buckets}, "+Inf": len(array)}


def reference_distributions(rows: Sequence[Row]) -> dict[str, Any]:
    """The predicted scores and the sentences' token lengths of the test split, in the service's /metrics buckets."""
    return {
        "pairs": len(rows),
        "predicted_score": cumulative_counts([row["predicted"] for row in rows], SCORE_BUCKETS),
        "input_tokens": cumulative_counts([tokens for row in rows for tokens in row["tokens"]], TOKEN_BUCKETS),
    }


def highlights(tables: dict[str, list[Row]]) -> list[str]:
    """A few sentences a reader acts on: where the error is largest and which way the scores lean."""
    lines = []
    for name, label in (("by_source", "source"), ("by_gold_band", "gold band"), ("by_length", "length band (tokens)")):
        filled = [row for row in tables[name] if row["pairs"]]
        worst = max(filled, key=lambda row: row["mae"])
        best = min(filled, key=lambda row: row["mae"])
        lines.append(
            f"largest error by {label}: {worst['band']} (MAE {worst['mae']:.2f}, {worst['pairs']} pairs); "
            f"smallest: {best['band']} (MAE {best['mae']:.2f})"
        )
    for row in tables["by_gold_band"]:
        if row["pairs"] and abs(row["bias"]) >= 0.5:
            direction = "over" if row["bias"] > 0 else "under"
            shift = f"{direction}shoot by {abs(row['bias']):.2f} on average"
            lines.append(f"gold {row['band']}: scores {shift} ({row['pairs']} pairs)")
    return lines
