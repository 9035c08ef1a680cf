"""The HTML template of `dvc plots show/diff` (.dvc/config: plots.html_template), with Vega, Vega-Lite
and Vega-Embed inlined so that dvc_plots/index.html draws its plots offline: DVC's own page loads
them from cdn.jsdelivr.net, and the project runs without a network. The libraries come from the
pinned vl-convert-python wheel, and `make install` writes the template (about 1 MB) instead of git
holding it: `python -m tgo.plots_page PATH`.

DVC fills {plot_divs} with one div per plot, each an inline script calling the global vegaEmbed; a
template without {scripts} drops the CDN <script> tags that its Vega renderer adds."""
import sys
from pathlib import Path

import vl_convert

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <script type="text/javascript">
(function () {
"use strict";
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


def template():
    """The page. The bundle runs as a classic script in <head>, before the plot divs' scripts, and
    sets window.vegaEmbed; the wrapping function keeps the bundle's top-level names out of the globals
    that those scripts share (each declares `var spec`)."""
    # vl-convert's newest Vega-Lite (6), matching its Vega 6; DVC's v5 specs compile unchanged (Vega-Embed
    # logs a version note in the console).
    bundle = vl_convert.javascript_bundle()
    # Each would break the page: </script ends the script early, and DVC replaces the placeholders.
    for text in ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}"):
        if text in bundle.lower():
            raise ValueError(f"the Vega bundle contains {text!r}")
    return PAGE.replace("BUNDLE", bundle)


def write(path):
    Path(path).write_text(template(), encoding="utf-8")


if __name__ == "__main__":
    write(sys.argv[1])
