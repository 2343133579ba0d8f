"""Score calibration: the strictly increasing maps (mse, f1), their storage, and auto's choice (cross-fitted F1,
beyond noise)."""

import numpy as np
import pytest

from pipeline.calibration import Calibration, calibrate, cross_fitted, f1_map, fit_map, strict_map
from pipeline.metrics import similarity_metrics
from serving.errors import ConfigError

GRID = np.linspace(0.0, 5.0, 50_001)  # the raw range, 1e-4 apart


def squeezed_scores(pairs: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gold 0-5 scores and a model's raw scores that rank them well but squeeze them into 4.3-4.9 (zero-shot e5's shape)."""
    rng = np.random.default_rng(seed)
    gold = rng.uniform(0, 5, pairs)
    raw = np.clip(4.3 + 0.12 * gold + rng.normal(0, 0.05, pairs), 0, 5)  # raw scores are 0-5 (serving.scale)
    return raw, gold


def bent_at(gold: np.ndarray) -> np.ndarray:
    """Raw scores equal to gold up to 3.2, squeezed into 3.2-3.4 for gold 3.2-4.0, stretched back to 5 above.

    Monotone, so verdicts at 3.0 are already right (F1 1.0: no map can win there), while at 3.5 the raw
    scores call gold 3.5-4.0 pairs dissimilar: a map back onto the gold scale wins.
    """
    return np.where(gold <= 3.2, gold, np.where(gold <= 4.0, 3.2 + (gold - 3.2) * 0.25, 3.4 + (gold - 4.0) * 1.6))


def noisy_scores(pairs: int = 500, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores on the gold scale with heavy noise: validation's best cut is not where the mse map crosses 3.0."""
    rng = np.random.default_rng(seed)
    gold = rng.uniform(0, 5, pairs)
    return np.clip(gold + rng.normal(0, 1.2, pairs), 0, 5), gold


def best_cut_f1(raw: np.ndarray, gold: np.ndarray, threshold: float) -> tuple[float, list[float]]:
    """Brute force: the best F1 of (raw >= cut) over midpoints of consecutive distinct raw scores, and its cuts."""
    values = np.unique(raw)
    cuts = (values[:-1] + values[1:]) / 2
    f1 = np.array([similarity_metrics(gold >= threshold, raw >= cut, 0.5)["f1"] for cut in cuts])
    return float(f1.max()), cuts[f1 == f1.max()].tolist()


def test_the_isotonic_fit_predicts_like_isotonic_regression():
    from sklearn.isotonic import IsotonicRegression

    raw, gold = squeezed_scores()
    points = fit_map(raw, gold)
    assert np.all(np.diff(points[0]) >= 0) and np.all(np.diff(points[1]) >= 0)
    assert min(points[1]) >= 0 and max(points[1]) <= 5
    probe = np.linspace(3.0, 6.0, 301)  # beyond both ends too
    reference = IsotonicRegression(y_min=0, y_max=5, out_of_bounds="clip").fit(raw, gold).predict(probe)
    np.testing.assert_allclose(np.interp(probe, *points), reference, atol=1e-12)


def test_the_strict_map_is_the_isotonic_map_blended_with_the_identity():
    raw, gold = squeezed_scores()
    isotonic, strict = fit_map(raw, gold), strict_map(raw, gold)
    assert strict[0][0] == 0.0 and strict[0][-1] == 5.0
    np.testing.assert_allclose(np.interp(GRID, *strict), 0.999 * np.interp(GRID, *isotonic) + 0.001 * GRID, atol=1e-12)


@pytest.mark.parametrize("choice", ["off", "mse", "f1", "auto"])
@pytest.mark.parametrize("scores", [squeezed_scores, noisy_scores])
def test_every_mode_is_strictly_increasing_and_keeps_spearman_exactly(choice, scores):
    raw, gold = scores()
    calibration = calibrate(raw, gold, choice, 3.0)
    assert np.all(np.diff(calibration.apply(GRID)) > 0)
    assert np.all((calibration.apply(GRID) >= 0) & (calibration.apply(GRID) <= 5))
    raw_spearman = similarity_metrics(gold, raw, 3.0)["spearman"]
    assert similarity_metrics(gold, calibration.apply(raw), 3.0)["spearman"] == raw_spearman
    assert similarity_metrics(gold, np.interp(raw, *fit_map(raw, gold)), 3.0)["spearman"] != raw_spearman  # flat steps tie


@pytest.mark.parametrize(
    ("scores", "threshold", "mse_falls_short"),
    [(squeezed_scores, 3.0, True), (noisy_scores, 3.0, False), (noisy_scores, 2.2, False)],
)
def test_f1_mode_puts_the_best_validation_cut_exactly_at_the_threshold(scores, threshold, mse_falls_short):
    raw, gold = scores()
    calibration = calibrate(raw, gold, "f1", threshold)
    cut = calibration.validation["raw_at_threshold"]
    best_f1, best_cuts = best_cut_f1(raw, gold, threshold)
    assert calibration.validation["mode"] == "f1" and calibration.applied and cut in best_cuts
    assert calibration.apply(np.array([cut]))[0] == threshold
    calibrated = calibration.apply(raw)
    assert np.all(calibrated[raw > cut] >= threshold) and np.all(calibrated[raw < cut] < threshold)
    assert similarity_metrics(gold, calibrated, threshold)["f1"] == best_f1
    mse_f1 = similarity_metrics(gold, np.interp(raw, *strict_map(raw, gold)), threshold)["f1"]
    assert mse_f1 < best_f1 if mse_falls_short else mse_f1 == best_f1  # where the mse map crosses the threshold


def test_f1_mode_falls_back_to_the_mse_map_when_the_threshold_is_out_of_its_range():
    raw, gold = squeezed_scores()
    calibration = calibrate(raw, gold * 0.5, "f1", 3.0)  # gold never reaches 3.0
    assert calibration.validation["mode"] == "mse" and "outside the map's range" in calibration.reason
    assert calibration.raw == strict_map(raw, gold * 0.5)[0] and calibration.applied
    assert f1_map(raw, gold, 3.0)[1] == ""


def cross_fitted_f1(raw: np.ndarray, gold: np.ndarray, threshold: float) -> dict[str, float]:
    """Each mode's cross-fitted validation F1, recomputed from the public fits."""
    fits = {"mse": strict_map, "f1": lambda r, g: f1_map(r, g, threshold)[0]}
    figures = {mode: similarity_metrics(gold, cross_fitted(raw, gold, fit), threshold)["f1"] for mode, fit in fits.items()}
    return {"off": similarity_metrics(gold, raw, threshold)["f1"], **figures}


def f1_interval_low(raw: np.ndarray, gold: np.ndarray, threshold: float, mode: str) -> float:
    """The lower end of the 95% paired-bootstrap interval of (mode's cross-fitted F1 - raw F1), recomputed."""
    from pipeline.promotion import paired_bootstrap

    fit = strict_map if mode == "mse" else (lambda r, g: f1_map(r, g, threshold)[0])
    return paired_bootstrap(gold, cross_fitted(raw, gold, fit), raw, "f1", threshold, 1000, 0.95, 0).low


@pytest.mark.parametrize(
    ("data", "threshold", "expected"),
    [
        (lambda: squeezed_scores(), 3.0, "f1"),  # both maps win by far; f1's F1 is the higher
        (lambda: noisy_scores(seed=7), 3.0, "f1"),  # f1 wins by 0.037, beyond noise
        (lambda: noisy_scores(seed=1), 3.0, "off"),  # f1 "wins" by 0.017 on validation: noise, so raw stays
        (lambda: (bent_at(g := np.random.default_rng(2).uniform(0, 5, 500)), g), 3.5, "mse"),
        (lambda: (bent_at(g := np.random.default_rng(2).uniform(0, 5, 500)), g), 3.0, "off"),  # off and mse tie at 1.0
    ],
)
def test_auto_applies_a_map_only_when_it_beats_raw_beyond_noise(data, threshold, expected):
    raw, gold = data()
    calibration = calibrate(raw, gold, "auto", threshold)
    figures = cross_fitted_f1(raw, gold, threshold)
    lows = {mode: f1_interval_low(raw, gold, threshold, mode) for mode in ("mse", "f1")}
    assert calibration.validation["mode"] == expected and calibration.applied is (expected != "off")
    assert {mode: interval["low"] for mode, interval in calibration.validation["f1_vs_raw"].items()} == lows
    winners = [mode for mode in ("mse", "f1") if lows[mode] > 0]
    if expected == "off":
        assert not winners and calibration.reason.startswith("auto: off: no map beats raw beyond noise")
    else:
        assert expected in winners and figures[expected] == max(figures[mode] for mode in winners)
        assert calibration.reason.startswith(f"auto: {expected}: beats raw beyond noise (cross-fitted validation F1@{threshold}")
    assert {mode: m["f1"] for mode, m in calibration.validation["cross_fitted"].items()} == {
        "mse": figures["mse"],
        "f1": figures["f1"],
    }
    if expected == "off" and max(figures.values()) > figures["off"]:  # the noisy case: a validation "win" refused
        assert figures["f1"] - figures["off"] > 0.01


def test_auto_reads_only_the_pairs_it_is_given(tmp_path, monkeypatch):
    raw, gold = squeezed_scores()
    monkeypatch.chdir(tmp_path)  # no reports/ or data/ here to read
    before = raw.copy(), gold.copy()
    whole, half = calibrate(raw, gold, "auto", 3.0), calibrate(raw[:300], gold[:300], "auto", 3.0)
    np.testing.assert_array_equal(raw, before[0])
    np.testing.assert_array_equal(gold, before[1])
    assert whole.validation["raw"]["pairs"] == 600 and half.validation["raw"]["pairs"] == 300
    assert whole == calibrate(raw, gold, "auto", 3.0) and half != whole
    assert half.validation["cross_fitted"]["f1"]["f1"] == cross_fitted_f1(raw[:300], gold[:300], 3.0)["f1"]


def test_off_is_the_identity_not_applied_with_the_evidence_kept():
    raw, gold = squeezed_scores()
    calibration = calibrate(raw, gold, "off", 3.0)
    assert not calibration.applied and calibration.reason == "train.calibration: off"
    np.testing.assert_array_equal(calibration.apply(raw), raw)
    assert calibration.validation["mode"] == "off" and set(calibration.validation["cross_fitted"]) == {"mse", "f1"}
    assert calibration.validation["folds"] == 5 and calibration.validation["threshold"] == 3.0


@pytest.mark.parametrize("choice", ["mse", "f1"])
def test_a_forced_mode_is_applied_and_maps_onto_the_gold_scale(choice):
    raw, gold = squeezed_scores()
    calibration = calibrate(raw, gold, choice, 3.0)
    assert calibration.applied and calibration.reason == f"train.calibration: {choice}"
    assert calibration.validation["mode"] == choice
    assert calibration.apply(np.array([4.3, 4.9]))[1] > 3.5


@pytest.mark.parametrize("choice", ["on", "", "F1", "isotonic", None])
def test_an_unknown_choice_is_refused(choice):
    raw, gold = squeezed_scores()
    with pytest.raises((ValueError, ConfigError), match=r"train\.calibration"):
        calibrate(raw, gold, choice, 3.0)


def test_too_few_pairs_are_not_fitted():
    calibration = calibrate(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), "mse", 3.0)
    assert not calibration.applied and "not fitted" in calibration.reason


def test_cross_fitted_predictions_never_see_their_own_pair():
    raw, gold = squeezed_scores(pairs=200)
    predicted = cross_fitted(raw, gold)
    assert predicted.shape == raw.shape
    in_sample = np.interp(raw, *strict_map(raw, gold))
    assert np.mean((in_sample - gold) ** 2) < np.mean((predicted - gold) ** 2)  # in-sample is optimistic
    np.testing.assert_array_equal(cross_fitted(raw, gold, lambda r, g: ([0.0, 5.0], [0.0, 5.0])), raw)


def test_a_saved_calibration_loads_back_and_a_folder_without_one_has_none(tmp_path):
    raw, gold = squeezed_scores()
    calibration = calibrate(raw, gold, "auto", 3.0)
    calibration.save(tmp_path)
    loaded = Calibration.load(tmp_path)
    assert loaded == calibration
    np.testing.assert_array_equal(loaded.apply(raw), calibration.apply(raw))
    assert Calibration.load(tmp_path / "elsewhere") is None
