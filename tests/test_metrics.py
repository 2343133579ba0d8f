import numpy as np
import pytest

from pipeline.metrics import f1_at, metrics_by_source, similarity_metrics


def test_f1_at_threshold_counts_by_hand():
    gold = np.array([4.0, 3.0, 1.0, 0.5, 3.5])
    predicted = np.array([3.2, 2.9, 3.1, 0.0, 4.0])
    # positives at 3.0: gold {0,1,4}; predicted {0,2,4}; true positives {0,4}: P = R = 2/3
    assert f1_at(gold, predicted, 3.0) == pytest.approx(2 / 3)
    assert f1_at(gold, predicted, 4.5) == 0.0


def test_correlations_and_mse():
    gold = [0.0, 1.0, 2.0, 3.0, 4.0]
    metrics = similarity_metrics(gold, [1.0, 2.0, 3.0, 4.0, 5.0], 3.0)
    assert metrics["pearson"] == pytest.approx(1.0) and metrics["spearman"] == pytest.approx(1.0)
    assert metrics["mse"] == pytest.approx(1.0) and metrics["pairs"] == 5
    reversed_metrics = similarity_metrics(gold, [4.0, 3.0, 2.0, 1.0, 0.0], 3.0)
    assert reversed_metrics["pearson"] == pytest.approx(-1.0)
    monotone = similarity_metrics(gold, [0.0, 0.1, 0.2, 4.0, 5.0], 3.0)
    assert monotone["spearman"] == pytest.approx(1.0) and monotone["pearson"] < 0.95


def test_constant_predictions_have_no_correlation_rather_than_nan():
    metrics = similarity_metrics([0.0, 2.0, 4.0], [2.5, 2.5, 2.5], 3.0)
    assert metrics["pearson"] is None and metrics["spearman"] is None
    assert metrics["f1"] == 0.0


def test_f1_is_undefined_without_a_gold_pair_at_the_threshold():
    """No 'similar' pair in gold: F1 has no positive class, so it is None (printed "-"), not a misleading 0."""
    assert similarity_metrics([0.0, 1.0, 2.9], [0.5, 3.5, 2.0], 3.0)["f1"] is None
    assert similarity_metrics([0.0, 1.0, 3.0], [0.5, 1.5, 2.0], 3.0)["f1"] == 0.0  # a positive, missed: F1 is 0


def test_per_source_metrics_split_the_pairs():
    by_source = metrics_by_source([1.0, 2.0, 4.0, 5.0], [1.0, 2.0, 5.0, 4.0], ["a", "a", "b", "b"], 3.0)
    assert list(by_source) == ["a", "b"]
    assert by_source["a"]["pearson"] == pytest.approx(1.0) and by_source["a"]["pairs"] == 2
    assert by_source["b"]["pearson"] == pytest.approx(-1.0) and by_source["b"]["f1"] == 1.0


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="one length"):
        similarity_metrics([1.0, 2.0], [1.0], 3.0)
