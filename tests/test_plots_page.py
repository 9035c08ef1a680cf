"""`dvc plots show/diff` pages draw offline: the template that .dvc/config names (plots.html_template,
written by tgo.plots_page at install) inlines Vega, Vega-Lite and Vega-Embed, in place of the CDN
<script> tags of DVC's own page."""
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
import vl_convert
import yaml

from micro import REPO, run
from tgo import plots_page

# How a script or a style sheet pulls in more: an import statement or import() call (the bare word is
# also in the bundle's list of reserved names), a CSS @import or url().
IMPORT = {"script": re.compile(r"\bimport(\s*[({*\"'`]|\s+[\w$])"), "style": re.compile(r"@import|url\(")}
REMOTE = re.compile(r"\s*(https?:)?//", re.I)
# The attributes through which a tag makes the browser fetch something.
LOADING = {"src", "href", "srcset", "data", "poster", "background", "action", "formaction"}
PLOTS = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]


class Page(HTMLParser):
    """An HTML page's loading attributes, (tag, name, value), and its inline script and style text."""

    def __init__(self, text):
        super().__init__()
        self.loads, self.code, self._tag = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.loads += [(tag, name, value) for name, value in attrs if name in LOADING]
        if tag == "meta" and ("http-equiv", "refresh") in attrs:
            self.loads.append((tag, "content", dict(attrs).get("content", "")))
        self._tag = tag
        if tag in ("script", "style"):
            self.code.append((tag, ""))

    def handle_endtag(self, tag):
        self._tag = None

    def handle_data(self, data):
        if self._tag in ("script", "style"):
            self.code[-1] = (self._tag, self.code[-1][1] + data)


def remote_loads(page):
    """What the page would fetch from a network: remote URLs in tags, JS imports, CSS imports."""
    found = [load for load in page.loads if REMOTE.match(load[2] or "")]
    for tag, text in page.code:
        found += [(tag, "import", m.group(0)) for m in IMPORT[tag].finditer(text)]
    return found


@pytest.fixture(scope="module")
def template():
    return plots_page.template()


@pytest.fixture(scope="module")
def shown(tmp_path_factory, template):
    """`dvc plots show` in a git repository holding the committed .dvc/config, dvc.yaml's plots and
    their data, and the template where make install writes it: the page's path."""
    root = tmp_path_factory.mktemp("plots")
    (root / ".dvc").mkdir()
    shutil.copy2(REPO / ".dvc" / "config", root / ".dvc" / "config")
    (root / ".dvc" / "plots_template.html").write_text(template, encoding="utf-8")
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": PLOTS}))
    for rel in {path for plot in PLOTS for props in plot.values() for path in props["y"]}:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    run(["git", "init", "-q"], root)
    run(["dvc", "plots", "show", "-o", "out"], root)
    return root / "out" / "index.html"


def test_the_template_inlines_the_libraries_and_loads_nothing(template):
    page = Page(template)
    assert "{plot_divs}" in template
    assert "{scripts}" not in template  # with it, DVC would add its CDN <script> tags
    assert page.loads == []
    assert remote_loads(page) == []
    assert [tag for tag, _ in page.code] == ["script", "style"]
    assert vl_convert.javascript_bundle() in page.code[0][1]


def test_dvc_plots_show_writes_a_page_with_the_bundle_and_no_remote_script(shown):
    text = shown.read_text(encoding="utf-8")
    page = Page(text)
    assert remote_loads(page) == []
    assert "cdn.jsdelivr.net" not in text
    assert vl_convert.javascript_bundle() in text
    specs = [json.loads(s) for s in re.findall(r"var spec = (.*?);\n", text)]
    assert len(specs) == len(PLOTS)
    # Vega fetches only data given by URL; DVC inlines every plot's values.
    assert all("values" in spec["data"] for spec in specs)
    assert '"url"' not in json.dumps(specs)


def test_the_page_draws_every_plot_in_chromium_without_a_network(shown, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed: the page's drawing is not checked (the page's text is)")
    # A proxy nobody listens on: any remote request fails, as offline.
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", f"--user-data-dir={tmp_path}",
         "--virtual-time-budget=10000", "--dump-dom", shown.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    ids = re.findall(r'<div id = "([^"]+)">', shown.read_text(encoding="utf-8"))
    assert len(ids) == len(PLOTS)
    starts = sorted(dom.index(f'<div id="{plot_id}"') for plot_id in ids)
    for start, end in zip(starts, starts[1:] + [len(dom)]):
        assert re.search(r'<(svg|canvas)\b[^>]*class="marks"', dom[start:end]), dom[start:start + 300]
