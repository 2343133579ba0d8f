"""Calibrated scores: a monotone map from a model's raw 0-5 output to the gold scale, fitted on validation.

A bi-encoder's 5 x cosine is a similarity, not a score on the annotators' scale (zero-shot e5 puts every
pair in 0.86-0.98 cosine). Isotonic regression (scikit-learn) fits the map; it is stored as its
breakpoints in calibration.json beside the weights (JSON, not a pickle) and applied with np.interp,
which is exactly how IsotonicRegression predicts between breakpoints (clipped outside them).
Whether the map is applied is decided on cross-fitted validation predictions (each fold predicted by a
map fitted on the other folds), so the decision is not made on the pairs the map was fitted to.
"""

from __future__ import annotations

import numpy as np

from pipeline.metrics import MAX_SCORE, similarity_metrics
from serving.pair_model import Calibration

__all__ = ["Calibration", "calibrate", "cross_fitted", "fit_map"]  # the map as scoring reads it: serving/pair_model.py

FOLDS = 5


def fit_map(raw_scores: np.ndarray, gold: np.ndarray) -> tuple[list[float], list[float]]:
    """Isotonic regression of gold on raw, bounded to [0, 5]; returns its breakpoints."""
    from sklearn.isotonic import IsotonicRegression

    regression = IsotonicRegression(y_min=0.0, y_max=MAX_SCORE, increasing=True, out_of_bounds="clip")
    regression.fit(np.asarray(raw_scores, dtype=np.float64), np.asarray(gold, dtype=np.float64))
    return regression.X_thresholds_.tolist(), regression.y_thresholds_.tolist()


def cross_fitted(raw_scores: np.ndarray, gold: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Out-of-fold calibrated predictions: each fold mapped by a map fitted on the other folds."""
    from sklearn.model_selection import KFold

    raw_scores, gold = np.asarray(raw_scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    predicted = np.empty_like(raw_scores)
    for fit_rows, held_out in KFold(n_splits=folds, shuffle=True, random_state=seed).split(raw_scores):
        points = fit_map(raw_scores[fit_rows], gold[fit_rows])
        predicted[held_out] = np.interp(raw_scores[held_out], *points)
    return predicted


def calibrate(raw_scores: np.ndarray, gold: np.ndarray, choice: str, threshold: float, seed: int = 0) -> Calibration:
    """Fit the map on all validation pairs; apply it when `choice` is on, or (auto) when cross-fitted F1 at `threshold` wins.

    F1 at the model's threshold is the headline metric; ties keep the raw scores (a map that does not help is not
    worth applying).
    """
    if len(raw_scores) < 2 * FOLDS:
        return Calibration([0.0, MAX_SCORE], [0.0, MAX_SCORE], False, f"fewer than {2 * FOLDS} validation pairs: not fitted")
    raw_metrics = similarity_metrics(gold, raw_scores, threshold)
    fitted_metrics = similarity_metrics(gold, cross_fitted(raw_scores, gold, seed=seed), threshold)
    wins = fitted_metrics["f1"] > raw_metrics["f1"]
    if choice == "auto":
        verdict = "wins" if wins else "does not win"
        f1_fitted, f1_raw = fitted_metrics["f1"], raw_metrics["f1"]
        reason = f"auto: cross-fitted validation F1@{threshold} {f1_fitted:.4f} vs raw {f1_raw:.4f}: {verdict}"
        applied = wins
    else:
        applied, reason = choice == "on", f"train.calibration: {choice}"
    raw_points, calibrated_points = fit_map(raw_scores, gold)
    evidence = {"raw": raw_metrics, "calibrated_cross_fitted": fitted_metrics, "folds": FOLDS, "threshold": threshold}
    return Calibration(raw_points, calibrated_points, applied, reason, evidence)
