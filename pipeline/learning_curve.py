"""Learning curve vs tuning: what each doubling of training data buys, beside what the study's tuning bought.

    make learning-curve            # after `make run` (it reads the study's report and the clean splits)

Fine-tunes the base model at each of `learning_curve.sizes` training pairs (seeded nested subsets of the train
split: train.seed; null = all) with params.yaml's `train` values (the study's first trial), and scores the
validation split (the best epoch, as the study does) and the test split, raw (no calibration). Each size is an
MLflow run nested under one parent run `learning-curve`. Beside it, the study's spread at its own size: best
minus worst trial, and the default (trial 0) vs the best, on the same validation figures.

Writes reports/learning_curve.csv (a DVC plot: `dvc plots show reports/learning_curve.csv -x train_pairs
-y val_pearson`), reports/learning_curve.md and reports/learning_curve.png (also artifacts of the parent run).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from pipeline.config import Params, load_params
from pipeline.errors import PipelineError, run_stage
from pipeline.paths import CLEAN_DIR, LEARNING_CURVE_PLOT, LEARNING_CURVE_REPORT, LEARNING_CURVE_TABLE, STUDY_REPORT
from pipeline.tables import atomic_write_text, markdown_table, read_jsonl, split_path

FIGURES = ("pearson", "f1")
COLUMNS = ["train_pairs", "val_pearson", "val_f1", "test_pearson", "test_f1", "train_seconds"]


def tuning_spread(study: dict[str, Any]) -> dict[str, Any]:
    """Validation Pearson and F1 of the study's complete trials: best, worst, the default (trial 0), its size."""
    trials = [trial for trial in study["trials"] if trial["state"] == "COMPLETE"]
    spread: dict[str, Any] = {"trials": len(trials)}
    for figure in FIGURES:
        values = [trial["validation"][figure] for trial in trials]
        default = next((t["validation"][figure] for t in trials if t["number"] == 0), None)
        spread[figure] = {"best": max(values), "worst": min(values), "default": default}
    return spread


def doubling_gains(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Between consecutive sizes: the change of each validation figure per doubling of the training pairs."""
    gains = []
    for smaller, larger in itertools.pairwise(points):
        doublings = math.log2(larger["train_pairs"] / smaller["train_pairs"])
        if doublings <= 0:  # a size past the split's end repeats the previous point
            continue
        row = {"from": smaller["train_pairs"], "to": larger["train_pairs"]}
        for figure in FIGURES:
            row[f"{figure} per doubling"] = (larger[f"val_{figure}"] - smaller[f"val_{figure}"]) / doublings
        gains.append(row)
    return gains


def curve_markdown(points: list[dict[str, Any]], gains: list[dict[str, Any]], spread: dict[str, Any], study_pairs: Any) -> str:
    """The report: the curve, the gain per doubling, the tuning spread, side by side."""
    tuning = [
        {"figure": figure, "best trial": spread[figure]["best"], "worst trial": spread[figure]["worst"],
         "best - worst": spread[figure]["best"] - spread[figure]["worst"],
         "best - default": None if spread[figure]["default"] is None else spread[figure]["best"] - spread[figure]["default"]}
        for figure in FIGURES
    ]  # fmt: skip
    return "\n".join(
        [
            "# Learning curve vs tuning (validation split, raw scores)\n",
            "Default hyperparameters (params.yaml `train`) at each training-set size:\n",
            markdown_table(points, COLUMNS),
            "What each doubling of the training pairs bought:\n",
            markdown_table(gains, ["from", "to", *(f"{figure} per doubling" for figure in FIGURES)]),
            f"What the study's tuning bought: {spread['trials']} complete trials at {study_pairs or 'all'} training pairs:\n",
            markdown_table(tuning, ["figure", "best trial", "worst trial", "best - worst", "best - default"]),
        ]
    )


def plot(points: list[dict[str, Any]], spread: dict[str, Any], path: Path) -> None:
    """Validation Pearson and F1 against training pairs (log scale), the study's best and worst as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [point["train_pairs"] for point in points]
    for axis, name in zip(axes, FIGURES, strict=True):
        axis.plot(sizes, [point[f"val_{name}"] for point in points], marker="o", label="default hyperparameters")
        for bound, style in (("best", "--"), ("worst", ":")):
            axis.axhline(spread[name][bound], linestyle=style, color="grey", label=f"study's {bound} trial")
        axis.set(xscale="log", xlabel="training pairs", ylabel=f"validation {name}", title=f"validation {name}")
        axis.set_xticks(sizes, [str(size) for size in sizes])
        axis.minorticks_off()
        axis.legend(fontsize=8)
    figure.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")
    figure.savefig(partial, dpi=100)
    plt.close(figure)
    os.replace(partial, path)


def train_point(params: Params, size: int | None, context, test_pairs, test_gold) -> dict[str, Any]:
    """Fine-tune at one size (inside its MLflow run); the validation and test figures."""
    import mlflow

    from pipeline.finetune import finetune
    from pipeline.heads import save_pair_model
    from pipeline.metrics import similarity_metrics
    from pipeline.scoring import PairScorer

    config = params.train.model_copy(update={"max_train_pairs": size})
    pairs = context.pairs_for_model(params.model.name)
    settings = context.settings_for_model(params.model.name)
    model, result = finetune(
        context.resolve(params.model.name), params.model, pairs, config, settings.threshold, quiet=True, nli=context.nli
    )
    with tempfile.TemporaryDirectory(prefix="learning-curve-") as folder:
        save_pair_model(model, pairs.tokenizer, settings, Path(folder) / "model")
        predicted = PairScorer.from_folder(Path(folder) / "model").raw_scores(test_pairs)
    test = similarity_metrics(test_gold, predicted, settings.threshold)
    point = {"train_pairs": result.train_pairs, "train_seconds": round(result.train_seconds, 1)}
    point.update({f"val_{figure}": result.best_metrics[figure] for figure in FIGURES})
    point.update({f"test_{figure}": test[figure] for figure in FIGURES})
    mlflow.log_params({"max_train_pairs": size, **{k: getattr(config, k) for k in ("learning_rate", "batch_size", "epochs")}})
    mlflow.log_metrics({key: value for key, value in point.items() if value is not None})
    return point


def main() -> None:
    import mlflow

    from pipeline.study.runner import study_context
    from pipeline.tracking import ensure_experiment, lineage_tags, mlflow_tracking_uri

    params, root = load_params(), Path.cwd()
    if not STUDY_REPORT.is_file():
        raise PipelineError(f"{STUDY_REPORT}: not found; run `make run` first (the curve sits beside the study's spread)")
    spread = tuning_spread(json.loads(STUDY_REPORT.read_text(encoding="utf-8")))
    records = read_jsonl(split_path(CLEAN_DIR, "test"))
    test_pairs, test_gold = [(r["sentence1"], r["sentence2"]) for r in records], [r["score"] for r in records]
    mlflow.set_tracking_uri(mlflow_tracking_uri(params.mlflow.tracking_uri, root))
    tags = lineage_tags(root)
    context = study_context(params, "learning-curve", tags)
    points = []
    with mlflow.start_run(experiment_id=ensure_experiment(params.mlflow.experiment, root), run_name="learning-curve", tags=tags):
        for size in params.learning_curve.sizes:
            with mlflow.start_run(run_name=f"train-pairs-{size or 'all'}", nested=True, tags=tags):
                points.append(train_point(params, size, context, test_pairs, test_gold))
            print(f"learning curve: {json.dumps(points[-1])}", flush=True)
        gains = doubling_gains(points)
        report = curve_markdown(points, gains, spread, params.train.max_train_pairs)
        rows = [",".join(COLUMNS), *(",".join(str(point[column]) for column in COLUMNS) for point in points)]
        atomic_write_text(LEARNING_CURVE_TABLE, "\n".join(rows) + "\n")
        atomic_write_text(LEARNING_CURVE_REPORT, report)
        plot(points, spread, LEARNING_CURVE_PLOT)
        for path in (LEARNING_CURVE_TABLE, LEARNING_CURVE_REPORT, LEARNING_CURVE_PLOT):
            mlflow.log_artifact(str(path))
    print(report)


if __name__ == "__main__":
    run_stage(main)
