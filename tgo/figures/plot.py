"""What every family's figures share: rendering, the last checkpoint's rows, interval bands and
error bars, panel grids, the depth axis and the zoo's colours and relative depth."""
import io
import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.textpath import TextToPath  # noqa: E402


# Interval bands: each at most BAND_ALPHA, and lighter when a panel has many, so that all of a
# panel's bands stacked stay below STACKED_ALPHA and leave every line visible.
BAND_ALPHA, STACKED_ALPHA = 0.15, 0.35


def png_bytes(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def last_checkpoint(rows):
    """(the last epoch, its rows)."""
    last = max(r["epoch"] for r in rows)
    return last, [r for r in rows if r["epoch"] == last]


def interval(rows, key):
    """(low, high) arrays of the interval of `key` (columns key_ci_low, key_ci_high); nan where a
    row has none (earlier checkpoints of some stages, metrics without intervals, older plot data)."""
    return tuple(np.array([r.get(f"{key}_ci_{end}", np.nan) for r in rows], dtype=float)
                 for end in ("low", "high"))


def band(ax, x, rows, key, colour, n_bands):
    """Shade the interval of `key` behind its line, one of the panel's n_bands; nan ends leave gaps."""
    low, high = interval(rows, key)
    if np.isfinite(low).any():
        alpha = min(BAND_ALPHA, 1 - (1 - STACKED_ALPHA) ** (1 / max(1, n_bands)))
        ax.fill_between(x, low, high, color=colour, alpha=alpha, lw=0)


def errorbars(ax, x, rows, key, colour):
    """Error bars for the interval of `key` at the points that have one (errorbar rejects nan)."""
    value = np.array([r[key] for r in rows], dtype=float)
    low, high = interval(rows, key)
    ok = np.isfinite(value) & np.isfinite(low) & np.isfinite(high)
    if ok.any():
        # The intervals are symmetric about the value; clipping only absorbs rounding.
        yerr = np.clip([value[ok] - low[ok], high[ok] - value[ok]], 0, None)
        ax.errorbar(np.asarray(x, dtype=float)[ok], value[ok], yerr=yerr, fmt="none", ecolor=colour,
                    elinewidth=1.2, capsize=3, zorder=3)


def grid(n, width=4.0, height=3.0, cols=4):
    """n panels of width x height inches, cols to a row, with fixed margins and gaps (inches) that
    fit a title, tick labels and an x label: tight_layout would measure every label first, which
    takes longer than drawing these many-panel figures."""
    rows = int(np.ceil(n / cols))
    w, h = width * cols, height * rows
    fig, axes = plt.subplots(rows, cols, figsize=(w, h), squeeze=False)
    left, right, bottom, top, gap_w, gap_h = 0.55, 0.35, 0.5, 0.8, 0.6, 0.75
    panel_w = (w - left - right - (cols - 1) * gap_w) / cols
    panel_h = (h - bottom - top - (rows - 1) * gap_h) / rows
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=gap_w / panel_w, hspace=gap_h / panel_h)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def _depth_label(site):
    """A site's tick label on a depth axis: emb (the embedding), the block's number, norm (the final norm)."""
    return {"embed": "emb", "final_norm": "norm"}.get(site, site.removeprefix("block_"))


class DepthLocator(ticker.Locator):
    """The labelled ticks of a depth axis, chosen when it is drawn (at its width then): the ends (the
    embedding and the final norm) always, and the blocks at multiples of the smallest step of 1, 2,
    5, 10, 20, ... that leaves half an em between neighbouring labels; a block whose label would
    come that close to an end's is left out."""

    def __init__(self, labels, fontsize):
        self.labels, self.fontsize = labels, fontsize
        prop = FontProperties(size=fontsize)
        self.width = {d: TextToPath().get_text_width_height_descent(t, prop, ismath=False)[0]
                      for d, t in labels.items()}  # points

    def __call__(self):
        lo, hi = self.axis.get_view_interval()
        per_depth = self.axis.axes.bbox.width * 72 / self.axis.figure.dpi / (hi - lo)  # points

        def apart(a, b):
            return abs(a - b) * per_depth >= (self.width[a] + self.width[b]) / 2 + self.fontsize / 2

        ends = [d for d, t in self.labels.items() if not t.isdigit()]
        blocks = sorted(d for d, t in self.labels.items() if t.isdigit())
        for step in (m * 10 ** e for e in itertools.count() for m in (1, 2, 5)):
            shown = [b for b in blocks if b % step == 0]
            if all(apart(a, b) for a, b in zip(shown, shown[1:])):
                break
        return sorted(ends + [b for b in shown if all(apart(b, e) for e in ends)])


def depth_axis(ax, sites, fontsize=7):
    """sites: {depth: site}. Every site gets a tick; `DepthLocator` labels as many as fit. The axis
    spans every site, also one whose values are all missing (the CLS token at the embedding)."""
    labels = {int(d): _depth_label(s) for d, s in sites.items()}
    lo, hi = min(labels), max(labels)
    margin = matplotlib.rcParams["axes.xmargin"] * (hi - lo)
    ax.set_xlim(lo - margin, hi + margin)
    ax.xaxis.set_major_locator(DepthLocator(labels, fontsize))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: labels.get(round(x), "")))
    ax.xaxis.set_minor_locator(ticker.FixedLocator(sorted(labels)))
    ax.tick_params(axis="x", labelsize=fontsize)
    ax.set_xlabel("block (emb: embedding, norm: final norm)", fontsize=fontsize + 1)


def zoo_colours(ids):
    """One colour per model of the zoo, the same in every figure."""
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(ids)}


def relative(rows, n_sites):
    """Depth relative to a model's number of sites, so that models of different depths line up."""
    return [r["depth"] / n_sites for r in rows]


def interval_words(level):
    """What the captions call the intervals, e.g. "95% jackknife intervals over the probe images"."""
    return f"{100 * level:g}% jackknife intervals over the probe images"


def clipped_text(ranks, cfg):
    """Why the fitted alpha window differs from the param's (the stage brought it down to what the
    probe set holds)."""
    asked = cfg["alpha_ranks"]
    return "" if list(ranks) == list(asked) else f", not {asked[0]}..{asked[1]}: the probe images hold fewer ranks"


def rendered(figures, pngs):
    """[(name, caption, Figure)] -> [(caption, PNG bytes)] for a page; each PNG is also kept in
    pngs[name] for the figures folder beside it."""
    for name, _, fig in figures:
        pngs[name] = png_bytes(fig)
    return [(caption, pngs[name]) for name, caption, _ in figures]
