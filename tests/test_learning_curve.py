"""make learning-curve on a tiny study: one parent MLflow run, one nested run per size, the table, report and plot."""

import csv

import yaml

from pipeline import learning_curve
from pipeline.stages import train
from tests.support.stores import runs_of, set_study


def test_learning_curve_beside_the_study_spread(stage_repo):
    set_study(stage_repo, n_trials=2)
    train.main()
    params = yaml.safe_load((stage_repo / "params.yaml").read_text(encoding="utf-8"))
    params["learning_curve"]["sizes"] = [20, 40, None]
    (stage_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    learning_curve.main()

    with (stage_repo / "reports/learning_curve.csv").open(encoding="utf-8") as stream:
        points = list(csv.DictReader(stream))
    sizes = [int(point["train_pairs"]) for point in points]
    assert sizes[:2] == [20, 40] and sizes[2] > 40  # null: the whole train split
    assert all(-1 <= float(point["val_pearson"]) <= 1 and 0 <= float(point["test_f1"]) <= 1 for point in points)
    report = (stage_repo / "reports/learning_curve.md").read_text(encoding="utf-8")
    assert "pearson per doubling" in report and "2 complete trials" in report and "best - default" in report
    assert (stage_repo / "reports/learning_curve.png").read_bytes().startswith(b"\x89PNG")

    _, children = runs_of(stage_repo)
    [parent_id] = {run.data.tags["mlflow.parentRunId"] for run in children if run.info.run_name.startswith("train-pairs-")}
    curve = [run for run in children if run.data.tags["mlflow.parentRunId"] == parent_id]
    assert sorted(run.info.run_name for run in curve) == ["train-pairs-20", "train-pairs-40", "train-pairs-all"]
    for run in curve:
        assert "val_pearson" in run.data.metrics and "data.train.md5" in run.data.tags
