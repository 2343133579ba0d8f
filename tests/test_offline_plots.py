"""The offline template of `dvc plots show` (pipeline/offline_plots.py) and the PNG charts (pipeline/charts.py).

The page drawing in a real browser is tests/test_pipeline_dvc.py's (on the reproduced tiny pipeline).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dvc_render.html import HTML
from dvc_render.vega import VegaRenderer

from pipeline.charts import analysis_charts, history_chart, render_png
from pipeline.offline_plots import PLOTS_PLACEHOLDER, offline_template, plots_show_command, write_template
from pipeline.paths import ANALYSIS_PLOTS, PLOTS_DIR

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_template_inlines_the_libraries_in_place_of_dvcs_cdn_scripts(tmp_path):
    path = write_template(tmp_path / "template.html")
    template = path.read_text(encoding="utf-8")
    for library in ("window.vegaEmbed=", "window.vega=", "window.vegaLite="):
        assert library in template, library
    assert template.count(PLOTS_PLACEHOLDER) == 1 and "{scripts}" not in template
    assert "<script src" not in template and len(template) > 500_000
    # Filled by dvc-render as `dvc plots show` does: a plot's div goes in, DVC's CDN <script src> tags do not.
    renderer = VegaRenderer([{"x": 1, "y": 2}], "metrics.csv", x="x", y="y")
    page = HTML(template).with_scripts(renderer.SCRIPTS).with_element(renderer.generate_html()).embed()
    assert "vegaEmbed('#metrics_csv', spec)" in page
    assert "cdn.jsdelivr.net" not in page and PLOTS_PLACEHOLDER not in page


def test_a_bundle_that_would_break_the_page_is_refused():
    assert offline_template("window.vegaEmbed = () => 1;").count("window.vegaEmbed = () => 1;") == 1
    for bad in ("let s = '</script>';", "const text = '{plot_divs}';"):
        with pytest.raises(ValueError, match="cannot be inlined"):
            offline_template(bad)


def test_plots_show_writes_to_reports_plots_unless_told_otherwise():
    template = Path("t.html")
    default = plots_show_command(["reports/compare.csv", "-x", "f1"], template)
    assert default[-7:] == ["--html-template", "t.html", "-o", str(PLOTS_DIR), "reports/compare.csv", "-x", "f1"]
    assert default[1:5] == ["-m", "dvc", "plots", "show"]
    assert plots_show_command(["-o", "elsewhere"], template)[-2:] == ["-o", "elsewhere"]
    assert str(PLOTS_DIR) not in plots_show_command(["--out=elsewhere"], template)


BANDS = [
    {"band": "0-1", "pairs": 3, "mean_gold": 0.4, "mean_predicted": 1.9, "mae": 1.5},
    {"band": "1-2", "pairs": 0},  # an empty band: no point, no bar
    {"band": "4-5", "pairs": 5, "mean_gold": 4.5, "mean_predicted": 4.0, "mae": 0.5},
]


def test_the_analysis_charts_render_to_the_same_png_every_time():
    charts = analysis_charts({"by_gold_band": BANDS, "by_length": BANDS, "by_source": BANDS})
    assert set(charts) == set(ANALYSIS_PLOTS)
    assert [row["band"] for row in charts["by_length"]["data"]["values"]] == ["0-1", "4-5"]
    first, second = render_png(charts["by_gold_band"]), render_png(charts["by_gold_band"])
    assert first.startswith(PNG_SIGNATURE) and first == second


def test_the_history_chart_has_one_line_per_figure():
    history = [{"epoch": 1.0, "pearson": 0.7, "f1": 0.6, "loss": 1.0}, {"epoch": 2.0, "pearson": 0.8, "f1": 0.65, "loss": 0.9}]
    spec = history_chart(history)
    assert {(row["epoch"], row["figure"]) for row in spec["data"]["values"]} == {
        (1.0, "pearson"), (1.0, "f1"), (2.0, "pearson"), (2.0, "f1")
    }  # fmt: skip
    assert render_png(spec).startswith(PNG_SIGNATURE)
