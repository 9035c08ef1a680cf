"""Figures as a reader sees them: the tick labels of every across-depth axis, drawn at the
report's size, never run into one another, whatever the number of blocks."""
import itertools
import math

import matplotlib.pyplot as plt
import pytest

from tgo.activations import site_name
from tgo.figures import correlation, spectral as F
from tgo.runs import SPECTRAL_METRICS


def sites(n_blocks):
    return [(d, site_name(d, n_blocks)) for d in range(n_blocks + 2)]


def spectral_rows(n_blocks):
    """The CLS token's rows: at the embedding one vector for every image, so every metric missing."""
    return [{"epoch": e, "site": s, "depth": d, "sample_set": "cls",
             **{m: d + e if d else math.nan for m in SPECTRAL_METRICS}}
            for e in (0, 1) for d, s in sites(n_blocks)]


def correlation_rows(n_blocks):
    return [{"epoch": e, "site": s, "depth": d, "tokens": t, "mean_r": d + e, "mean_abs_r": d + e}
            for e in (0, 1) for d, s in sites(n_blocks) for t in ("patches", "with_cls")]


# Each figure, and how many of its axes (the first ones) run across depth.
FIGURES = {"across_depth": (lambda n: F.fig_across_depth(spectral_rows(n), "cls", "CLS"), len(SPECTRAL_METRICS)),
           "correlation": (lambda n: correlation.fig_correlation(correlation_rows(n)), 2)}


def shown_labels(ax):
    """The x tick labels drawn (within the axis's view, visible, not empty), with their boxes on the canvas."""
    lo, hi = sorted(ax.get_xlim())
    return [(t.get_text(), t.get_window_extent()) for x, t in zip(ax.get_xticks(), ax.get_xticklabels())
            if lo <= x <= hi and t.get_visible() and t.get_text()]


@pytest.mark.parametrize("n_blocks", [6, 12, 24, 48])
@pytest.mark.parametrize("figure", FIGURES)
def test_depth_tick_labels_never_overlap(figure, n_blocks):
    draw, n_axes = FIGURES[figure]
    fig = draw(n_blocks)
    fig.canvas.draw()
    for ax in fig.axes[:n_axes]:
        labels = shown_labels(ax)
        texts = [t for t, _ in labels]
        for (a, box_a), (b, box_b) in itertools.combinations(labels, 2):
            assert not box_a.overlaps(box_b), f"{figure}, {n_blocks} blocks: {a!r} and {b!r} overlap: {texts}"
        assert texts[0] == "emb" and texts[-1] == "norm", texts  # both ends always named, with values or not
        if n_blocks == 6:  # the demo's depth: every site named
            assert texts == ["emb", *map(str, range(1, 7)), "norm"]
        else:  # thinned, but still a readable number of blocks named
            assert len(texts) >= 6, texts
    plt.close(fig)


# Token layouts of three families (tgo.capture.layout): a class token read by the head; a class and
# a distillation token, the head reading their mean (DeiT distilled); registers and an average pool.
LAYOUTS = {"plain": {"prefix_tokens": ["cls"], "head_input": None, "n_blocks": 2},
           "distilled": {"prefix_tokens": ["cls", "dist"], "head_input": "mean of the CLS and distillation tokens",
                         "n_blocks": 2},
           "gap": {"prefix_tokens": ["reg"], "head_input": "average of the patch tokens, then fc_norm", "n_blocks": 2}}


@pytest.mark.parametrize("family, expected", [("plain", "cls"), ("distilled", "cls"), ("gap", "pooled")])
def test_the_zoo_figure_shows_the_set_the_claims_judge(family, expected):
    """One rule for the set that stands for the image (tgo.activations.image_set): the zoo page's
    first spectral figure draws, per model, the set the CLS claims judge; for DeiT distilled that is
    the CLS token even though its head reads another representation."""
    from tgo.activations import image_set, sample_set_names
    layout = LAYOUTS[family]
    names = sample_set_names(layout)
    rows = [{"epoch": 0, "site": s, "depth": d, "sample_set": name, **{m: 1.0 + d for m in SPECTRAL_METRICS}}
            for d, s in sites(2) for name in names]
    assert image_set({r["sample_set"] for r in rows}) == image_set(names) == expected
    fig = F.fig_zoo_spectral({family: {"layout": layout, "spectral_rows": rows}}, "image")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [f"{family} ({expected})"]
    plt.close(fig)


def test_the_figures_mirror_the_metric_families():
    """One figures module per metric family of tgo/geometry (stats holds the interval helpers), each
    in one section of the pages with its report part and its zoo part, and a section for each
    paper's claims: a family without figures, or figures the pages never place, fails here."""
    from micro import REPO
    from tgo.claims import PAPERS
    from tgo.figures import SECTIONS
    families = [f for _, _, modules in SECTIONS for f in modules]
    geometry = {p.stem for p in (REPO / "tgo/geometry").glob("*.py")} - {"__init__", "stats"}
    assert sorted(f.__name__.rsplit(".", 1)[1] for f in families) == sorted(geometry)
    assert all(callable(f.report) and callable(f.zoo) for f in families)
    assert [paper for _, paper, _ in SECTIONS] == list(PAPERS)
