"""Charts of the pipeline's tables as PNG images, rendered offline by vl-convert: what MLflow shows on a run.

The specs are Vega-Lite 5, like DVC's plot templates, so a run's image and the `make plots` page agree. Rendering
is deterministic (same table, same bytes) and takes about 0.15 s a chart after the first (about 1 s: the engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Row = dict[str, Any]
Spec = dict[str, Any]
VEGA_LITE_VERSION = "5.21"  # the last Vega-Lite 5: DVC's templates are Vega-Lite 5 specs
PNG_SCALE = 2.0  # twice the pixels: sharp in the MLflow UI's artifact view
WIDTH, HEIGHT = 420, 260


def chart(rows: Sequence[Row], title: str, layers: list[Spec]) -> Spec:
    """A Vega-Lite spec: the rows inline (nothing to fetch), a title, one or more layers."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",  # an identifier only: never fetched
        "title": title,
        "data": {"values": list(rows)},
        "width": WIDTH,
        "height": HEIGHT,
        "layer": layers,
    }


def xy(x: str, y: str, **extra: Any) -> Spec:
    """An x/y encoding of two quantitative fields, with any more channels."""
    return {"x": {"field": x, "type": "quantitative"}, "y": {"field": y, "type": "quantitative"}, **extra}


def calibration_chart(bands: Sequence[Row]) -> Spec:
    """Mean predicted against mean gold score per gold band, beside the diagonal a calibrated model lies on."""
    scale = {"scale": {"domain": [0, 5]}}
    diagonal = {
        "data": {"values": [{"mean_gold": 0, "mean_predicted": 0}, {"mean_gold": 5, "mean_predicted": 5}]},
        "mark": {"type": "line", "color": "grey", "strokeDash": [4, 4]},
        "encoding": xy("mean_gold", "mean_predicted"),
    }
    encoding = xy("mean_gold", "mean_predicted")
    encoding["x"].update(title="mean gold score", **scale)
    encoding["y"].update(title="mean predicted score", **scale)
    points = {"mark": {"type": "line", "point": True}, "encoding": encoding}
    label_mark = {"type": "text", "align": "left", "dx": 6, "dy": -6}
    labels = {"mark": label_mark, "encoding": xy("mean_gold", "mean_predicted", text={"field": "band"})}
    filled = [row for row in bands if row.get("pairs")]
    return chart(filled, "Calibration per gold band (dashed: a calibrated model)", [diagonal, points, labels])


def error_bars_chart(rows: Sequence[Row], title: str) -> Spec:
    """Mean absolute error per band, one horizontal bar each, in the table's order."""
    bars = {
        "mark": "bar",
        "encoding": {
            "x": {"field": "mae", "type": "quantitative", "title": "mean absolute error (0-5 scale)"},
            "y": {"field": "band", "type": "nominal", "sort": None, "title": None},
        },
    }
    return chart([row for row in rows if row.get("pairs")], title, [bars])


def analysis_charts(tables: dict[str, list[Row]]) -> dict[str, Spec]:
    """The error analysis's charts, by table name: the calibration plot and the error by length band and by source."""
    return {
        "by_gold_band": calibration_chart(tables["by_gold_band"]),
        "by_length": error_bars_chart(tables["by_length"], "Mean absolute error by length band (tokens of the longer sentence)"),
        "by_source": error_bars_chart(tables["by_source"], "Mean absolute error by source"),
    }


def history_chart(history: Sequence[Row], figures: Sequence[str] = ("pearson", "f1")) -> Spec:
    """Validation figures after each epoch of one training run (a trial), one line per figure."""
    rows = [{"epoch": entry["epoch"], "figure": figure, "value": entry[figure]} for entry in history for figure in figures]
    lines = {
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "epoch", "type": "quantitative", "axis": {"tickMinStep": 1, "format": "d"}},
            "y": {"field": "value", "type": "quantitative", "title": "validation", "scale": {"zero": False}},
            "color": {"field": "figure", "type": "nominal"},
        },
    }
    return chart(rows, "Validation after each epoch", [lines])


def render_png(spec: Spec) -> bytes:
    """The chart as PNG bytes, offline (vl-convert's bundled Vega, no browser)."""
    import vl_convert

    return vl_convert.vegalite_to_png(spec, vl_version=VEGA_LITE_VERSION, scale=PNG_SCALE)
