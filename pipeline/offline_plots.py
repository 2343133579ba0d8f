"""`dvc plots show` pages that draw offline.

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so it stays blank without network. This HTML template
(`--html-template`) inlines the same libraries from vl-convert's bundle instead (about 0.9 MB, generated in about 2 s,
never committed):

    python -m pipeline.offline_plots [dvc plots show arguments]    # make plots, make learning-curve, make compare

writes the template to reports/plots/offline_template.html, then runs `dvc plots show --html-template <it>` with the
arguments (`-o reports/plots` unless an `-o` is given) and prints the page's file:// URL.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.charts import VEGA_LITE_VERSION
from pipeline.paths import PLOTS_DIR, PLOTS_TEMPLATE
from pipeline.tables import atomic_write_text

PLOTS_PLACEHOLDER = "{plot_divs}"  # where DVC puts one div (and its vegaEmbed call) per plot: dvc_render.html
# DVC fills these by plain text replacement over the whole page; the page leaves out "{scripts}", where DVC would put
# its CDN <script src> tags.
DVC_PLACEHOLDERS = (PLOTS_PLACEHOLDER, "{scripts}", "{refresh_tag}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <script>
    /* vega, vega-lite and vega-embed, inlined (vl-convert VL_CONVERT_VERSION, Vega-Lite VEGA_LITE_VERSION) */
    (() => {
    BUNDLE
    })();
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_template(bundle: str, vl_convert_version: str = "") -> str:
    """DVC's page with the JavaScript bundle inlined in place of its CDN scripts.

    The bundle runs inside a function, so its top-level names cannot clash with DVC's `var spec` per plot; it
    publishes vegaEmbed, vega and vegaLite on window, which is all DVC's per-plot scripts call.
    """
    if "</script" in bundle.lower() or any(placeholder in bundle for placeholder in DVC_PLACEHOLDERS):
        raise ValueError("the JavaScript bundle holds '</script' or a DVC placeholder: it cannot be inlined as is")
    header = PAGE.replace("VL_CONVERT_VERSION", vl_convert_version or "?").replace("VEGA_LITE_VERSION", VEGA_LITE_VERSION)
    head, tail = header.split("BUNDLE")
    return head + bundle + tail


def write_template(path: Path = PLOTS_TEMPLATE) -> Path:
    """Generate the template from the installed vl-convert (its bundle of the libraries) and write it to path."""
    import vl_convert

    version = getattr(vl_convert, "__version__", "")
    atomic_write_text(path, offline_template(vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION), version))
    return path


def plots_show_command(arguments: Sequence[str], template: Path) -> list[str]:
    """`dvc plots show` with the offline template, into reports/plots unless the arguments name an output folder."""
    given_out = any(arg in ("-o", "--out") or arg.startswith("--out=") for arg in arguments)
    out = [] if given_out else ["-o", str(PLOTS_DIR)]
    return [sys.executable, "-m", "dvc", "plots", "show", "--html-template", str(template), *out, *arguments]


def main(arguments: Sequence[str]) -> int:
    template = write_template()
    return subprocess.run(plots_show_command(arguments, template)).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
