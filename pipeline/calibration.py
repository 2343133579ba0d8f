"""Calibrated scores: a strictly increasing map from a model's raw 0-5 output to the gold scale, fitted on validation.

A bi-encoder's 5 x cosine is a similarity, not a score on the annotators' scale (zero-shot e5 puts every
pair in 0.86-0.98 cosine). Every map is stored as breakpoints in calibration.json beside the weights (JSON,
not a pickle) and applied with np.interp. The modes (train.calibration):

- mse: isotonic regression of gold on raw (scikit-learn), blended with the identity, (1 - EPS) * g(x) + EPS * x,
  so the map is strictly increasing on [0, 5]: no new ties, ranks (Spearman) exactly untouched.
- f1: the mse map s composed with a warp w of the raw axis (0 -> 0, t* -> c, 5 -> 5, linear between), where t*
  is validation's F1-optimal raw cut and s(c) = threshold: s(w(t*)) = threshold, so the verdict at the
  threshold is the best cut's; the rest of the scale stays the mse map's.
- off: the identity, not applied (the evidence is still recorded).
- auto: a map only when its cross-fitted validation F1 at the threshold (each fold mapped by a map fitted on the
  other folds, so the choice is not made on the pairs a map was fitted to) beats the raw scores' beyond noise:
  the paired bootstrap's 95% interval of the difference lies above 0 (pipeline.promotion, the champion's rule).
  Among such maps the higher F1 wins, ties to the simpler; none: off. A map that wins by noise on validation
  was seen to lose on the test split's other domain (docs/insight.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from pipeline.metrics import MAX_SCORE, similarity_metrics
from serving.pair_model import Calibration

if TYPE_CHECKING:
    from pipeline.promotion import Comparison

__all__ = ["Calibration", "best_cut", "calibrate", "cross_fitted", "f1_map", "fit_map", "strict_map"]

FOLDS = 5
EPS = 1e-3  # the identity's weight in every fitted map: a slope of at least EPS everywhere on [0, 5]
MODES = ("off", "mse", "f1")  # simplest first: auto's ties go to the earlier
BOOTSTRAP_SAMPLES, CONFIDENCE = 1000, 0.95  # auto applies a map only when it beats raw beyond noise
CHOICES = ("auto", *MODES)

Points = tuple[list[float], list[float]]  # (raw breakpoints, calibrated value at each), as np.interp reads them
Fit = Callable[[np.ndarray, np.ndarray], Points]
IDENTITY: Points = ([0.0, MAX_SCORE], [0.0, MAX_SCORE])


def fit_map(raw_scores: np.ndarray, gold: np.ndarray) -> Points:
    """Isotonic regression of gold on raw, bounded to [0, 5]; returns its breakpoints (flat steps included)."""
    from sklearn.isotonic import IsotonicRegression

    regression = IsotonicRegression(y_min=0.0, y_max=MAX_SCORE, increasing=True, out_of_bounds="clip")
    regression.fit(np.asarray(raw_scores, dtype=np.float64), np.asarray(gold, dtype=np.float64))
    return regression.X_thresholds_.tolist(), regression.y_thresholds_.tolist()


def strict_map(raw_scores: np.ndarray, gold: np.ndarray) -> Points:
    """The mse mode's map, (1 - EPS) * g(x) + EPS * x for the isotonic map g: strictly increasing on [0, 5].

    Both terms are linear between g's breakpoints and the ends 0 and 5, so those knots represent it exactly.
    """
    x_points, y_points = fit_map(raw_scores, gold)
    knots = np.unique(np.concatenate([[0.0, MAX_SCORE], x_points]))
    return knots.tolist(), ((1 - EPS) * np.interp(knots, x_points, y_points) + EPS * knots).tolist()


def best_cut(raw_scores: np.ndarray, gold: np.ndarray, threshold: float, prefer: float) -> float | None:
    """The raw cut t maximizing F1 of (raw >= t) against (gold >= threshold); among equal F1, the one nearest `prefer`.

    Candidates are the midpoints between consecutive distinct raw scores. None without a candidate (one distinct
    score) or without a similar gold pair (F1 undefined).
    """
    values, inverse = np.unique(np.asarray(raw_scores, dtype=np.float64), return_inverse=True)
    positive = np.asarray(gold, dtype=np.float64) >= threshold
    if len(values) < 2 or not positive.any():
        return None
    predicted = np.cumsum(np.bincount(inverse, minlength=len(values))[::-1])[::-1][1:]  # raw >= values[i + 1]
    true_positive = np.cumsum(np.bincount(inverse, weights=positive, minlength=len(values))[::-1])[::-1][1:]
    f1 = 2 * true_positive / (positive.sum() + predicted)
    cuts = (values[:-1] + values[1:]) / 2
    best = np.flatnonzero(f1 == f1.max())
    return float(cuts[best[np.argmin(np.abs(cuts[best] - prefer))]])


def warp_to_cut(points: Points, cut: float, crossing: float, threshold: float) -> Points:
    """s(w(x)) as breakpoints, for the map s in `points` (s(crossing) == threshold) and w: 0 -> 0, cut -> crossing, 5 -> 5.

    Knots: cut (valued exactly threshold) and the preimages under w of s's knots; both maps are linear between them.
    """
    knots, values = np.asarray(points[0]), np.asarray(points[1])
    below, above = values < threshold, values > threshold
    left = knots[below] * (cut / crossing)  # w^-1 on [0, crossing]: 0 stays 0 exactly
    right = MAX_SCORE - (MAX_SCORE - knots[above]) * ((MAX_SCORE - cut) / (MAX_SCORE - crossing))  # 5 stays 5 exactly
    keep_left, keep_right = left < cut, right > cut  # a knot rounded onto the cut gives way to it
    raw = np.concatenate([left[keep_left], [cut], right[keep_right]])
    calibrated = np.concatenate([values[below][keep_left], [threshold], values[above][keep_right]])
    return raw.tolist(), calibrated.tolist()


def f1_map(raw_scores: np.ndarray, gold: np.ndarray, threshold: float) -> tuple[Points, str]:
    """The f1 mode's map and "", or the mse map and why the f1 map cannot be made (the threshold out of its range)."""
    points = strict_map(raw_scores, gold)
    low, high = points[1][0], points[1][-1]
    crossing = float(np.interp(threshold, points[1], points[0]))
    if not (low < threshold < high and 0.0 < crossing < MAX_SCORE):
        return points, f"threshold {threshold} outside the map's range [{low:.3f}, {high:.3f}]"
    cut = best_cut(raw_scores, gold, threshold, prefer=crossing)
    if cut is None:
        return points, "no raw cut to choose (one distinct score or no gold pair at the threshold)"
    return warp_to_cut(points, cut, crossing, threshold), ""


def mode_map(mode: str, raw_scores: np.ndarray, gold: np.ndarray, threshold: float) -> tuple[Points, str]:
    """The map of a mode fitted on these pairs, and why it fell back to the mse map ("" when it did not)."""
    if mode == "off":
        return IDENTITY, ""
    return f1_map(raw_scores, gold, threshold) if mode == "f1" else (strict_map(raw_scores, gold), "")


def cross_fitted(
    raw_scores: np.ndarray, gold: np.ndarray, fit: Fit = strict_map, folds: int = FOLDS, seed: int = 0
) -> np.ndarray:
    """Out-of-fold calibrated predictions: each fold mapped by `fit`'s map fitted on the other folds."""
    from sklearn.model_selection import KFold

    raw_scores, gold = np.asarray(raw_scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    predicted = np.empty_like(raw_scores)
    for fit_rows, held_out in KFold(n_splits=folds, shuffle=True, random_state=seed).split(raw_scores):
        predicted[held_out] = np.interp(raw_scores[held_out], *fit(raw_scores[fit_rows], gold[fit_rows]))
    return predicted


def pick_mode(
    raw_scores: np.ndarray, gold: np.ndarray, crossed: dict[str, np.ndarray], threshold: float, seed: int
) -> tuple[str, dict[str, Comparison]]:
    """auto's choice: a fitted mode whose cross-fitted F1 beats the raw scores' beyond noise (the paired bootstrap's
    interval of the difference lies above 0, as for the champion alias); the best such by F1, ties to the simpler;
    "off" when none does. Returns the mode and each fitted mode's comparison with raw."""
    from pipeline.promotion import paired_bootstrap

    comparisons = {
        mode: paired_bootstrap(gold, scores, raw_scores, "f1", threshold, BOOTSTRAP_SAMPLES, CONFIDENCE, seed)
        for mode, scores in crossed.items()
    }
    winners = [mode for mode in MODES[1:] if comparisons[mode].low > 0]
    if not winners:
        return "off", comparisons
    return max(winners, key=lambda mode: (comparisons[mode].challenger, -MODES.index(mode))), comparisons


def _auto_reason(chosen: str, comparisons: dict[str, Comparison], threshold: float) -> str:
    """One line: the chosen mode and every fitted mode's cross-fitted F1 and interval against raw."""
    raw_f1 = next(iter(comparisons.values())).champion
    figures = ", ".join(
        f"{mode} {c.challenger:.4f} [{c.low:+.4f}, {c.high:+.4f}]" for mode, c in comparisons.items()
    )  # fmt: skip
    verdict = "beats raw beyond noise" if chosen != "off" else "no map beats raw beyond noise"
    return (
        f"auto: {chosen}: {verdict} (cross-fitted validation F1@{threshold}: off {raw_f1:.4f}, {figures}; "
        f"{CONFIDENCE:.0%} paired-bootstrap intervals of map - raw)"
    )


def calibrate(raw_scores: np.ndarray, gold: np.ndarray, choice: str, threshold: float, seed: int = 0) -> Calibration:
    """Fit the chosen mode's map (auto: the best by cross-fitted F1 at `threshold`) on these validation pairs.

    The evidence (Calibration.validation) holds the chosen mode, the raw metrics, every fitted mode's cross-fitted
    metrics, the folds, the threshold and the raw score the map sends to the threshold; only these pairs are read.
    """
    if choice not in CHOICES:
        raise ValueError(f"train.calibration must be one of {', '.join(CHOICES)}, got {choice!r}")
    raw_scores, gold = np.asarray(raw_scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if len(raw_scores) < 2 * FOLDS:
        reason = f"fewer than {2 * FOLDS} validation pairs: not fitted"
        return Calibration(*IDENTITY, False, reason, {"mode": "off", "threshold": threshold})
    raw_metrics = similarity_metrics(gold, raw_scores, threshold)
    scores = {mode: cross_fitted(raw_scores, gold, _fitter(mode, threshold), seed=seed) for mode in MODES[1:]}
    crossed = {mode: similarity_metrics(gold, predicted, threshold) for mode, predicted in scores.items()}
    mode, comparisons = pick_mode(raw_scores, gold, scores, threshold, seed)
    if choice == "auto":
        reason = _auto_reason(mode, comparisons, threshold)
    else:
        mode, reason = choice, f"train.calibration: {choice}"
    points, fallback = mode_map(mode, raw_scores, gold, threshold)
    if fallback:
        mode, reason = "mse", f"{reason}; f1 map not made ({fallback}): mse map instead"
    at_threshold = float(np.interp(threshold, points[1], points[0])) if points[1][0] <= threshold <= points[1][-1] else None
    evidence = {
        "mode": mode, "threshold": threshold, "folds": FOLDS, "raw": raw_metrics, "cross_fitted": crossed,
        "f1_vs_raw": {name: {"low": c.low, "high": c.high, "confidence": c.confidence} for name, c in comparisons.items()},
    }  # fmt: skip
    return Calibration(*points, mode != "off", reason, {**evidence, "raw_at_threshold": at_threshold})


def _fitter(mode: str, threshold: float) -> Fit:
    """The fit function cross_fitted takes for a fitted mode (mse or f1)."""
    return lambda raw_scores, gold: mode_map(mode, raw_scores, gold, threshold)[0]
