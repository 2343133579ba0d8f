"""What `make run` ends with: the results in one short table a person reads at a glance.

    python -m pipeline.results          # after `dvc repro`; `dvc metrics show` still lists every metric

Test split overall and per source (F1@threshold, Pearson, Spearman, MSE), the chosen trial's validation
figures, the registered version and the served runtime, and where the files are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.paths import (
    ANALYSIS_REPORT,
    METRICS,
    MODEL_CARD,
    MODEL_DIR,
    PACKAGE_REPORT,
    PREDICTIONS,
    REGISTER_REPORT,
    STUDY_REPORT,
)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def metric_rows(metrics: dict[str, Any]) -> list[str]:
    """The test split's table: all pairs, then one row per source."""
    threshold = metrics["threshold"]  # evaluate.threshold, which the model also carries (similarity.json)
    header = f"{'test split':<22}{'pairs':>6}{f'F1@{threshold}':>9}{'Pearson':>9}{'Spearman':>10}{'MSE':>7}"
    rows = [header, "-" * len(header)]
    named = [("all", metrics["test"]), *((f"  {name}", values) for name, values in metrics.get("by_source", {}).items())]
    for name, values in named:
        rows.append(
            f"{name[:22]:<22}{values['pairs']:>6}{_number(values['f1']):>9}{_number(values['pearson']):>9}"
            f"{_number(values['spearman']):>10}{_number(values['mse']):>7}"
        )
    return rows


def results_table(
    metrics: dict[str, Any] | None,
    study: dict[str, Any] | None,
    register: dict[str, Any] | None,
    package: dict[str, Any] | None,
) -> str:
    """The short summary; sections whose report is missing (a stage not run yet) are left out."""
    if metrics is None:
        return f"no {METRICS} yet: run `dvc repro` first"
    lines = metric_rows(metrics)
    if study is not None:
        validation, trials = study["validation"], len(study.get("trials", []))
        lines += [
            "",
            f"validation, {study['shipped']['description']}, of a {trials}-trial study: "
            + "  ".join(f"{key} {_number(validation.get(key))}" for key in ("f1", "pearson", "spearman", "mse")),
        ]
    if register is not None:
        lines.append(
            f"registered: {register['model_name']} v{register['version']}; champion v{register['champion_version']} "
            f"({register['decision']['reason']})"
        )
    if package is not None:
        lines.append(f"served: {package['bento']} on runtime {package['runtime']['runtime']} (`make serve`)")
    lines += [
        "",
        f"files: {METRICS} (all metrics: `dvc metrics show`), {PREDICTIONS}, {ANALYSIS_REPORT},",
        f"       {MODEL_CARD}, {MODEL_DIR}/; experiments: `make ui` (MLflow); plots: `make plots`",
    ]
    return "\n".join(lines)


def main() -> None:
    print(results_table(*(_read(path) for path in (METRICS, STUDY_REPORT, REGISTER_REPORT, PACKAGE_REPORT))))


if __name__ == "__main__":
    main()
