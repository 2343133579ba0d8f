"""Calibrated scores: a monotone map from a model's raw 0-5 output to the gold scale, fitted on validation.

A bi-encoder's 5 x cosine is a similarity, not a score on the annotators' scale (zero-shot e5 puts every
pair in 0.86-0.98 cosine). Isotonic regression (scikit-learn) fits the map; it is stored as its
breakpoints in calibration.json beside the weights (JSON, not a pickle) and applied with np.interp,
which is exactly how IsotonicRegression predicts between breakpoints (clipped outside them).
Whether the map is applied is decided on cross-fitted validation predictions (each fold predicted by a
map fitted on the other folds), so the decision is not made on the pairs the map was fitted to.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.metrics import MAX_SCORE, similarity_metrics
from pipeline.paths import CALIBRATION_FILE

FOLDS = 5


@dataclass(frozen=True)
class Calibration:
    """The fitted map (breakpoints) and whether scoring applies it, with the evidence for that choice."""

    raw: list[float]  # increasing breakpoints of the raw score
    calibrated: list[float]  # the calibrated score at each breakpoint
    applied: bool
    reason: str
    validation: dict[str, Any] = field(default_factory=dict)  # metrics raw vs cross-fitted calibrated

    def apply(self, raw_scores: np.ndarray) -> np.ndarray:
        """Raw scores -> calibrated 0-5 scores (whether or not `applied`: evaluate reports both)."""
        return np.interp(np.asarray(raw_scores, dtype=np.float64), self.raw, self.calibrated)

    def save(self, folder: str | Path) -> None:
        (Path(folder) / CALIBRATION_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> Calibration | None:
        """The model folder's calibration, or None for a folder without one."""
        path = Path(folder) / CALIBRATION_FILE
        return cls(**json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


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
