"""Every artifact path of the pipeline, once. Relative to the repository root, where every stage runs.

dvc.yaml names the same files as stage outputs; tests/test_architecture.py checks that no other module
spells one of them.
"""

from __future__ import annotations

from pathlib import Path

# Inside a saved pair model, a registered model and a BentoML model: the names scoring reads live with the service
from serving.pair_model import CALIBRATION_FILE, MODEL_CARD_FILE, ONNX_DIR, PAIR_FOLDER, SETTINGS_FILE  # noqa: F401

# Data
RAW_DIR = Path("data/raw")  # download: the three splits (and NLI triplets) as read from the sources
CLEAN_DIR = Path("data/clean")  # preprocess: normalized, validated splits
TOKENIZED_DIR = Path("data/tokenized")  # tokenize: pair encodings (cross and mlp heads) and the tokenizer
TOKENIZED_PAIRS = TOKENIZED_DIR / "pairs"
TOKENIZER_DIR = TOKENIZED_DIR / "tokenizer"

# Models
BASE_DIR = Path("models/base")  # base: the base encoder, as the base stage materialized it
SOURCE_RECORD = BASE_DIR / "source.json"  # where those weights came from (kind, revision, resolved commit)
MODEL_DIR = Path("models/model")  # train: the study's best model, calibrated
STUDIES_DIR = Path("studies")  # train: each study's trial models (studies/<study name>/trial-N)
TRIAL_DIR_PREFIX = "trial-"

# Reports
PREPROCESS_REPORT = Path("reports/preprocess.json")
TRAIN_METRICS = Path("reports/train_metrics.json")
TRAIN_HISTORY = Path("reports/train_history.json")
STUDY_REPORT = Path("reports/study.json")
METRICS = Path("reports/metrics.json")  # evaluate: test-split metrics
PREDICTIONS = Path("reports/predictions.csv")
ANALYSIS_DIR = Path("reports/analysis")  # analyze: error analysis of the test predictions
ANALYSIS_REPORT = ANALYSIS_DIR / "error_analysis.md"
ANALYSIS_TABLES = {name: ANALYSIS_DIR / f"{name}.csv" for name in ("by_source", "by_gold_band", "by_length", "worst_pairs")}
TEST_DISTRIBUTIONS = ANALYSIS_DIR / "test_distributions.json"  # predicted scores and token lengths, /metrics buckets
ANALYSIS_SUMMARY = ANALYSIS_DIR / "summary.json"  # the highlights, for the model card
# The tables above as PNG images (vl-convert, offline): logged with the folder to the registered run in MLflow
ANALYSIS_PLOTS = {
    "by_gold_band": ANALYSIS_DIR / "calibration.png",
    "by_length": ANALYSIS_DIR / "mae_by_length.png",
    "by_source": ANALYSIS_DIR / "mae_by_source.png",
}
REGISTER_REPORT = Path("reports/register.json")
MODEL_CARD = Path("reports") / MODEL_CARD_FILE  # register: the new version's card (also its description)
PACKAGE_REPORT = Path("reports/package.json")
LEARNING_CURVE_TABLE = Path("reports/learning_curve.csv")  # make learning-curve
LEARNING_CURVE_REPORT = Path("reports/learning_curve.md")
LEARNING_CURVE_PLOT = Path("reports/learning_curve.png")
COMPARE_REPORT = Path("reports/compare.md")  # make compare
COMPARE_TABLE = Path("reports/compare.csv")
PLOTS_DIR = Path("reports/plots")  # make plots: the page of `dvc plots show` (index.html)
PLOTS_TEMPLATE = PLOTS_DIR / "offline_template.html"  # its HTML template, vega libraries inlined (generated)

# Stores (defaults; environment variables and params may point elsewhere)
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
OPTUNA_DB = STUDIES_DIR / "optuna.db"
BENTOML_HOME_DIR = "bentoml_home"
BENTOFILE = Path("bentofile.yaml")
PIPELINE_FILE = Path("dvc.yaml")  # the stages; the train stage's deps and params are what names a study

# Inside a saved pair model, a registered model and a BentoML model: the names scoring reads live with the service
