"""Score calibration: the isotonic map, its storage, and the auto rule on cross-fitted validation scores."""

import numpy as np
import pytest

from pipeline.calibration import Calibration, calibrate, cross_fitted, fit_map


def squeezed_scores(pairs: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gold 0-5 scores and a model's raw scores that rank them well but squeeze them into 4.3-4.9 (zero-shot e5's shape)."""
    rng = np.random.default_rng(seed)
    gold = rng.uniform(0, 5, pairs)
    raw = 4.3 + 0.12 * gold + rng.normal(0, 0.05, pairs)
    return raw, gold


def test_the_map_is_monotone_bounded_and_predicts_like_isotonic_regression():
    from sklearn.isotonic import IsotonicRegression

    raw, gold = squeezed_scores()
    points = fit_map(raw, gold)
    assert np.all(np.diff(points[0]) >= 0) and np.all(np.diff(points[1]) >= 0)
    assert min(points[1]) >= 0 and max(points[1]) <= 5
    probe = np.linspace(3.0, 6.0, 301)  # beyond both ends too
    reference = IsotonicRegression(y_min=0, y_max=5, out_of_bounds="clip").fit(raw, gold).predict(probe)
    np.testing.assert_allclose(np.interp(probe, *points), reference, atol=1e-12)


def test_auto_applies_a_map_that_wins_on_cross_fitted_f1():
    raw, gold = squeezed_scores()
    calibration = calibrate(raw, gold, "auto", 3.0)
    assert calibration.applied and calibration.reason.startswith("auto: cross-fitted validation F1@3.0")
    figures = calibration.validation
    assert figures["calibrated_cross_fitted"]["f1"] > figures["raw"]["f1"]
    assert figures["calibrated_cross_fitted"]["mse"] < figures["raw"]["mse"]


def test_auto_keeps_raw_scores_that_are_already_on_the_scale():
    rng = np.random.default_rng(1)
    gold = rng.uniform(0, 5, 400)
    raw = gold.copy()  # a perfect model: no map can win on F1
    calibration = calibrate(raw, gold, "auto", 3.0)
    assert not calibration.applied and "does not win" in calibration.reason


def bent_at(gold: np.ndarray) -> np.ndarray:
    """Raw scores equal to gold up to 3.2, squeezed into 3.2-3.4 for gold 3.2-4.0, stretched back to 5 above.

    Monotone, so verdicts at 3.0 are already right (F1 1.0: no map can win there), while at 3.5 the raw
    scores call gold 3.5-4.0 pairs dissimilar: a map back onto the gold scale wins.
    """
    return np.where(gold <= 3.2, gold, np.where(gold <= 4.0, 3.2 + (gold - 3.2) * 0.25, 3.4 + (gold - 4.0) * 1.6))


def test_auto_judges_the_map_at_the_given_threshold():
    gold = np.random.default_rng(2).uniform(0, 5, 500)
    raw = bent_at(gold)
    at_klue, at_threshold = calibrate(raw, gold, "auto", 3.0), calibrate(raw, gold, "auto", 3.5)
    assert not at_klue.applied and at_klue.validation["raw"]["f1"] == 1.0
    assert at_threshold.applied and at_threshold.reason.startswith("auto: cross-fitted validation F1@3.5")
    assert at_threshold.validation["threshold"] == 3.5
    assert at_threshold.validation["calibrated_cross_fitted"]["f1"] > at_threshold.validation["raw"]["f1"]


@pytest.mark.parametrize(("choice", "applied"), [("on", True), ("off", False)])
def test_on_and_off_force_the_choice_but_still_fit_the_map(choice, applied):
    raw, gold = squeezed_scores()
    calibration = calibrate(raw, gold, choice, 3.0)
    assert calibration.applied is applied and calibration.reason == f"train.calibration: {choice}"
    assert calibration.apply(np.array([4.3, 4.9]))[1] > 3.5


def test_too_few_pairs_are_not_fitted():
    calibration = calibrate(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), "on", 3.0)
    assert not calibration.applied and "not fitted" in calibration.reason


def test_cross_fitted_predictions_never_see_their_own_pair():
    raw, gold = squeezed_scores(pairs=200)
    predicted = cross_fitted(raw, gold)
    assert predicted.shape == raw.shape
    in_sample = np.interp(raw, *fit_map(raw, gold))
    assert np.mean((in_sample - gold) ** 2) < np.mean((predicted - gold) ** 2)  # in-sample is optimistic


def test_a_saved_calibration_loads_back_and_a_folder_without_one_has_none(tmp_path):
    raw, gold = squeezed_scores()
    calibration = calibrate(raw, gold, "auto", 3.0)
    calibration.save(tmp_path)
    loaded = Calibration.load(tmp_path)
    assert loaded == calibration
    np.testing.assert_array_equal(loaded.apply(raw), calibration.apply(raw))
    assert Calibration.load(tmp_path / "elsewhere") is None
