"""Stage analyze: error analysis of the test predictions -> reports/analysis/ (CSV tables that dvc.yaml
declares as plots, the same as PNG images for MLflow, a Markdown report, the test split's distributions in the
service's /metrics buckets)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from pipeline.analysis import analysis_tables, highlights, reference_distributions, worst_pairs
from pipeline.charts import analysis_charts, render_png
from pipeline.config import load_params
from pipeline.errors import DataError, run_stage
from pipeline.paths import (
    ANALYSIS_DIR,
    ANALYSIS_PLOTS,
    ANALYSIS_REPORT,
    ANALYSIS_SUMMARY,
    ANALYSIS_TABLES,
    PREDICTIONS,
    TEST_DISTRIBUTIONS,
)
from pipeline.swap import replace_folder
from pipeline.tables import markdown_table

SUMMARY_COLUMNS = ["band", "pairs", "mean_gold", "mean_predicted", "bias", "mae", "mse", "verdict_accuracy"]
WORST_COLUMNS = ["source", "score", "predicted", "error", "sentence1", "sentence2"]
Rows = list[dict[str, Any]]


def read_predictions(path: Path) -> Rows:
    """The evaluate stage's predictions.csv as rows with numbers and both sentences' token counts."""
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            records = list(csv.DictReader(stream))
        rows = []
        for row in records:
            tokens = (int(row["tokens1"]), int(row["tokens2"]))
            rows.append({**row, "score": float(row["score"]), "predicted": float(row["predicted"]), "tokens": tokens})
        return rows
    except FileNotFoundError as error:
        raise DataError(f"{path}: not found (run the evaluate stage first)") from error
    except (KeyError, ValueError) as error:
        raise DataError(f"{path}: not a predictions table of the evaluate stage ({error})") from error


def csv_text(rows: Rows, columns: list[str]) -> str:
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return stream.getvalue()


def report_markdown(tables: dict[str, Rows], worst: Rows, notes: list[str], threshold: float) -> str:
    """The error-analysis report a person reads: highlights, the three tables, the worst pairs."""
    sections = [
        "# Error analysis of the test split\n",
        f"Gold and predicted scores are 0-5; a verdict is 'similar' at >= {threshold:g}. Bias = mean predicted - mean gold.\n",
        "## Highlights\n",
        "".join(f"- {note}\n" for note in notes),
        "## By source\n",
        markdown_table(tables["by_source"], SUMMARY_COLUMNS),
        "## By gold-score band (calibration: mean predicted vs mean gold)\n",
        markdown_table(tables["by_gold_band"], SUMMARY_COLUMNS),
        "## By length band (tokens of the longer sentence, quartiles)\n",
        markdown_table(tables["by_length"], SUMMARY_COLUMNS),
        f"## The {len(worst)} pairs with the largest error\n",
        markdown_table(worst, WORST_COLUMNS),
    ]
    return "\n".join(sections)


def main() -> None:
    threshold = load_params().evaluate.threshold
    rows = read_predictions(PREDICTIONS)
    tables = analysis_tables(rows, threshold)
    worst = worst_pairs(rows)
    notes = highlights(tables)
    images = {name: render_png(spec) for name, spec in analysis_charts(tables).items()}  # the register stage logs them

    def fill(folder: Path) -> None:
        folder.mkdir(parents=True)
        for name, table in tables.items():
            (folder / ANALYSIS_TABLES[name].name).write_text(csv_text(table, SUMMARY_COLUMNS), encoding="utf-8")
        (folder / ANALYSIS_TABLES["worst_pairs"].name).write_text(csv_text(worst, WORST_COLUMNS), encoding="utf-8")
        (folder / ANALYSIS_REPORT.name).write_text(report_markdown(tables, worst, notes, threshold), encoding="utf-8")
        distributions = json.dumps(reference_distributions(rows), indent=2) + "\n"
        (folder / TEST_DISTRIBUTIONS.name).write_text(distributions, encoding="utf-8")
        summary = json.dumps({"highlights": notes, **tables}, ensure_ascii=False, indent=2) + "\n"
        (folder / ANALYSIS_SUMMARY.name).write_text(summary, encoding="utf-8")
        for name, png in images.items():
            (folder / ANALYSIS_PLOTS[name].name).write_bytes(png)

    replace_folder(ANALYSIS_DIR, fill)
    print(f"analyze: {len(rows)} test pairs -> {ANALYSIS_DIR}/")
    for note in notes:
        print(f"analyze: {note}")


if __name__ == "__main__":
    run_stage(main)
