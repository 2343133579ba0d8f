"""Pure metric functions: F1 of the binary label at a threshold (the headline), Pearson, Spearman, MSE."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from serving.scale import MAX_SCORE, SCORE_BUCKETS, SIMILAR_AT, TOKEN_BUCKETS

__all__ = [  # the scale's constants live with the service (serving/scale.py); the pipeline reads them from here too
    "MAX_SCORE", "SCORE_BUCKETS", "SIMILAR_AT", "TOKEN_BUCKETS", "f1_at", "metrics_by_source", "similarity_metrics",
]  # fmt: skip


def f1_at(gold: np.ndarray, predicted: np.ndarray, threshold: float) -> float:
    """F1 of 'similar' (score >= threshold) as the positive class; 0.0 when nothing is positive."""
    gold_positive = gold >= threshold
    predicted_positive = predicted >= threshold
    true_positive = float(np.sum(gold_positive & predicted_positive))
    denominator = float(np.sum(gold_positive) + np.sum(predicted_positive))
    return 2 * true_positive / denominator if denominator else 0.0


def _correlation(value: float) -> float | None:
    """None where the correlation is undefined (a constant input), so the JSON stays valid."""
    return None if np.isnan(value) else float(value)


def similarity_metrics(gold: Sequence[float], predicted: Sequence[float], threshold: float) -> dict[str, float | None]:
    """All headline metrics for one set of pairs; None where a figure is undefined (F1 without a gold pair at or
    above the threshold, correlations of a constant)."""
    gold_array = np.asarray(gold, dtype=np.float64)
    predicted_array = np.asarray(predicted, dtype=np.float64)
    if gold_array.shape != predicted_array.shape or gold_array.ndim != 1:
        raise ValueError(f"gold and predicted must be 1-d of one length, got {gold_array.shape} and {predicted_array.shape}")
    constant = len(gold_array) < 2 or np.ptp(gold_array) == 0 or np.ptp(predicted_array) == 0
    return {
        "f1": f1_at(gold_array, predicted_array, threshold) if np.any(gold_array >= threshold) else None,  # no positive class
        "pearson": None if constant else _correlation(stats.pearsonr(gold_array, predicted_array).statistic),
        "spearman": None if constant else _correlation(stats.spearmanr(gold_array, predicted_array).statistic),
        "mse": float(np.mean((gold_array - predicted_array) ** 2)) if len(gold_array) else None,
        "pairs": len(gold_array),
    }


def metrics_by_source(
    gold: Sequence[float], predicted: Sequence[float], sources: Sequence[str], threshold: float
) -> dict[str, dict[str, float | None]]:
    """similarity_metrics for each distinct source, in sorted order."""
    gold_array = np.asarray(gold, dtype=np.float64)
    predicted_array = np.asarray(predicted, dtype=np.float64)
    source_array = np.asarray(sources)
    return {
        source: similarity_metrics(gold_array[source_array == source], predicted_array[source_array == source], threshold)
        for source in sorted(set(sources))
    }
