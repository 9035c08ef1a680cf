"""The report's figures: matplotlib, one function per figure, rows of the analysis stages' CSV
files in (numbers as floats), a Figure out; `png_bytes` renders one."""
import io
import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.textpath import TextToPath  # noqa: E402

from tgo.activations import SAMPLE_SET_WORDS, image_set, sample_set_names  # noqa: E402
from tgo.runs import HEADLINE_METRICS, SPECTRAL_METRICS  # noqa: E402

# Interval bands: each at most BAND_ALPHA, and lighter when a panel has many, so that all of a
# panel's bands stacked stay below STACKED_ALPHA and leave every line visible.
BAND_ALPHA, STACKED_ALPHA = 0.15, 0.35


def png_bytes(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _last(rows):
    last = max(r["epoch"] for r in rows)
    return last, [r for r in rows if r["epoch"] == last]


def _ci(rows, key):
    """(low, high) arrays of the interval of `key` (columns key_ci_low, key_ci_high); nan where a
    row has none (earlier checkpoints of some stages, metrics without intervals, older plot data)."""
    return tuple(np.array([r.get(f"{key}_ci_{end}", np.nan) for r in rows], dtype=float)
                 for end in ("low", "high"))


def _band(ax, x, rows, key, colour, n_bands):
    """Shade the interval of `key` behind its line, one of the panel's n_bands; nan ends leave gaps."""
    low, high = _ci(rows, key)
    if np.isfinite(low).any():
        alpha = min(BAND_ALPHA, 1 - (1 - STACKED_ALPHA) ** (1 / max(1, n_bands)))
        ax.fill_between(x, low, high, color=colour, alpha=alpha, lw=0)


def _errorbars(ax, x, rows, key, colour):
    """Error bars for the interval of `key` at the points that have one (errorbar rejects nan)."""
    value = np.array([r[key] for r in rows], dtype=float)
    low, high = _ci(rows, key)
    ok = np.isfinite(value) & np.isfinite(low) & np.isfinite(high)
    if ok.any():
        # The intervals are symmetric about the value; clipping only absorbs rounding.
        yerr = np.clip([value[ok] - low[ok], high[ok] - value[ok]], 0, None)
        ax.errorbar(np.asarray(x, dtype=float)[ok], value[ok], yerr=yerr, fmt="none", ecolor=colour,
                    elinewidth=1.2, capsize=3, zorder=3)


# ------------------------------------------------------------------------------------------------
# Training and spectral geometry (TGO-I)
# ------------------------------------------------------------------------------------------------

def fig_training(curves):
    """curves: {name: (steps, values)} from DVCLive's TSV files."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name in ("train/loss", "val/loss"):
        if name in curves:
            axes[0].plot(*curves[name], marker="o", label=name)
    for name in ("val/top1", "val/top5"):
        if name in curves:
            axes[1].plot(*curves[name], marker="o", label=name)
    axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy", ylim=(0, 100))
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _grid(n, width=4.0, height=3.0, cols=4):
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


def _depth_axis(ax, sites, fontsize=7):
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


def fig_across_depth(rows, sample_set, title):
    """Each metric across depth (embedding, blocks, final norm), one line per checkpoint, with its
    interval as a band."""
    sub = [r for r in rows if r["sample_set"] == sample_set]
    epochs = sorted({r["epoch"] for r in sub})
    sites = dict(sorted({(r["depth"], r["site"]) for r in sub}))
    cmap = plt.get_cmap("viridis")
    fig, axes = _grid(len(SPECTRAL_METRICS))
    for ax, metric in zip(axes, SPECTRAL_METRICS):
        for i, e in enumerate(epochs):
            line = sorted((r for r in sub if r["epoch"] == e), key=lambda r: r["depth"])
            x, colour = [r["depth"] for r in line], cmap(i / max(1, len(epochs) - 1))
            ax.plot(x, [r[metric] for r in line], marker=".", color=colour, label=f"epoch {int(e)}")
            _band(ax, x, line, metric, colour, len(epochs))
        ax.set_title(metric.replace("_", " "))
        _depth_axis(ax, sites)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"across depth, per checkpoint: {title}")
    return fig


def fig_across_training(rows, sample_set, title):
    """Each metric across training, one line per site (embedding, blocks, final norm), with its
    interval as a band."""
    sub = [r for r in rows if r["sample_set"] == sample_set]
    sites = [s for _, s in sorted({(r["depth"], r["site"]) for r in sub})]
    cmap = plt.get_cmap("plasma")
    fig, axes = _grid(len(SPECTRAL_METRICS))
    for ax, metric in zip(axes, SPECTRAL_METRICS):
        for i, site in enumerate(sites):
            line = sorted((r for r in sub if r["site"] == site), key=lambda r: r["epoch"])
            x, colour = [r["epoch"] for r in line], cmap(i / max(1, len(sites) - 1))
            ax.plot(x, [r[metric] for r in line], marker=".", color=colour, label=site)
            _band(ax, x, line, metric, colour, len(sites))
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"across training, per site: {title}")
    return fig


def fig_eigenspectra(spectra, rows, sample_set, ranks, title):
    """Eigenspectra on log-log axes at the final norm per checkpoint, and across depth at the last
    checkpoint, with the alpha-ReQ power-law fit over the rank window drawn on the last."""
    sub = [r for r in spectra if r["sample_set"] == sample_set]
    epochs = sorted({r["epoch"] for r in sub})
    last = epochs[-1]
    sites = [s for _, s in sorted({(r["depth"], r["site"]) for r in rows})]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = ((axes[0], [("final_norm", e) for e in epochs], "final norm, per checkpoint"),
              (axes[1], [(s, last) for s in sites], f"epoch {int(last)}, per site"))
    for ax, curves, title in panels:
        cmap = plt.get_cmap("viridis")
        for i, (site, epoch) in enumerate(curves):
            lam = np.array([r["eigenvalue"] for r in sub if r["site"] == site and r["epoch"] == epoch])
            lam = lam[lam > 0]
            if len(lam) == 0:
                continue
            p = lam / lam.sum()
            label = f"epoch {int(epoch)}" if ax is axes[0] else site
            ax.loglog(np.arange(1, len(p) + 1), p, color=cmap(i / max(1, len(curves) - 1)), label=label)
        ax.set(xlabel="rank k", ylabel="p_k = lambda_k / sum lambda", title=title)
        ax.grid(alpha=0.3, which="both")
    final = next(r for r in rows if r["site"] == "final_norm" and r["sample_set"] == sample_set
                 and r["epoch"] == last)
    lam = np.array([r["eigenvalue"] for r in sub if r["site"] == "final_norm" and r["epoch"] == last])
    if np.isfinite(final["alpha"]) and lam.sum() > 0:
        k = np.arange(ranks[0], ranks[1] + 1)
        p = lam / lam.sum()
        # The fitted line passes through the weighted mean of the window, as in the WLS fit.
        w = 1.0 / k
        c = np.sum(w * (np.log(p[k - 1]) + final["alpha"] * np.log(k))) / w.sum()
        axes[0].loglog(k, np.exp(c) * k ** -final["alpha"], "r--", lw=2,
                       label=f"fit alpha={final['alpha']:.2f} (R2={final['alpha_r2']:.3f})")
    for ax in axes:
        ax.legend(fontsize=6)
    fig.suptitle(f"eigenspectra: {title}")
    fig.tight_layout()
    return fig


def readable_sites(sites, most=6):
    """The sites to draw as lines: all when at most `most`, else the final norm and `most` - 1
    blocks evenly spaced from the first to the last (the embedding left out)."""
    if len(sites) <= most:
        return list(sites)
    blocks = [s for s in sites if s not in ("embed", "final_norm")]
    picks = sorted(set(np.linspace(0, len(blocks) - 1, most - 1).round().astype(int)))
    return [blocks[i] for i in picks] + [s for s in sites if s == "final_norm"]


def fig_sample_size(sample_size_rows, spectral_rows, sample_set, title):
    """Each headline metric against the number of probe images (nested subsets N/8 .. N, last
    checkpoint), one line per site (`readable_sites`), with the interval at N (the full probe set)
    as an error bar: a line that still climbs or falls at N by more than its bar has not settled."""
    sub = [r for r in sample_size_rows if r["sample_set"] == sample_set]
    sites = [s for _, s in sorted({(r["depth"], r["site"]) for r in sub})]
    shown = readable_sites(sites)
    sizes = sorted({r["n_images"] for r in sub})
    _, full = _last([r for r in spectral_rows if r["sample_set"] == sample_set])
    cmap = plt.get_cmap("plasma")
    fig, axes = _grid(len(HEADLINE_METRICS))
    for ax, metric in zip(axes, HEADLINE_METRICS):
        for j, site in enumerate(shown):
            # Colour by depth as in fig_across_training, stopping short of plasma's pale yellow end.
            colour = cmap(0.85 * sites.index(site) / max(1, len(sites) - 1))
            pts = sorted((r["n_images"], r[metric]) for r in sub if r["site"] == site)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", color=colour, label=site)
            # Nudge each site's bar sideways so that the bars at N do not hide one another.
            nudge = 2 ** (0.04 * (j - (len(shown) - 1) / 2))
            _errorbars(ax, [sizes[-1] * nudge], [r for r in full if r["site"] == site][:1], metric, colour)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(int(n)) for n in sizes])
        ax.minorticks_off()
        ax.set(title=metric.replace("_", " "), xlabel="number of probe images")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"against the number of probe images, last checkpoint: {title}")
    return fig


# ------------------------------------------------------------------------------------------------
# Token geometry (On the Information Geometry of Vision Transformers)
# ------------------------------------------------------------------------------------------------

PREFIX_STYLES = {"cls": ("--", "x"), "dist": ("-.", "^"), "reg": (":", "s")}


def fig_alpha_depth(depth_rows):
    """Mean patch-token alpha across blocks (band: spread over tokens) and each prefix group's
    (CLS, distillation token, registers: their mean), per checkpoint; black error bars: their
    intervals over the probe images at the last checkpoint."""
    epochs = sorted({r["epoch"] for r in depth_rows})
    groups = [(k, k.split("_")[0]) for k in depth_rows[0] if k.endswith(("_alpha", "_alpha_mean"))
              and not k.startswith("patch")]
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, e in enumerate(epochs):
        rows = sorted((r for r in depth_rows if r["epoch"] == e), key=lambda r: r["depth"])
        b = [r["depth"] for r in rows]
        m = np.array([r["patch_alpha_mean"] for r in rows])
        s = np.array([r["patch_alpha_std"] for r in rows])
        colour = cmap(i / max(1, len(epochs) - 1))
        ax.plot(b, m, marker="o", color=colour, label=f"patches, epoch {int(e)}")
        ax.fill_between(b, m - s, m + s, color=colour, alpha=0.15)
        for key, group in groups:
            ls, marker = PREFIX_STYLES[group]
            ax.plot(b, [r[key] for r in rows], ls=ls, marker=marker, color=colour,
                    label=f"{group}{' (mean)' if key.endswith('_mean') else ''}" if e == epochs[-1] else None)
        if e == epochs[-1]:
            # Black, not the checkpoint's colour: distinct from the spread band and visible on
            # viridis's pale last colour.
            for key in ["patch_alpha_mean"] + [k for k, _ in groups]:
                _errorbars(ax, b, rows, key, "k")
    words = {"--": "dashed", "-.": "dash-dot", ":": "dotted"}
    styles = ", ".join(f"{words[PREFIX_STYLES[g][0]]} {g}" for _, g in groups)
    ax.set(xlabel="depth (block)", ylabel="alpha",
           title="alpha signature across depth" + (f" (prefix tokens: {styles})" if groups else ""))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _grid_map(sig_rows, value, epoch, block):
    rows = [r for r in sig_rows if r["epoch"] == epoch and r["depth"] == block and r["row"] >= 0]
    h, w = int(max(r["row"] for r in rows)) + 1, int(max(r["col"] for r in rows)) + 1
    m = np.full((h, w), np.nan)
    for r in rows:
        m[int(r["row"]), int(r["col"])] = r[value]
    return m


def fig_alpha_maps(sig_rows, epoch):
    """Alpha of every patch token on the patch grid, one panel per block."""
    blocks = sorted({int(r["depth"]) for r in sig_rows})
    fig, axes = _grid(len(blocks), width=3, height=2.8, cols=min(6, len(blocks)))
    for ax, b in zip(axes, blocks):
        im = ax.imshow(_grid_map(sig_rows, "alpha", epoch, b), cmap="magma")
        ax.set_title(f"block {b}", fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"alpha per patch token on the grid, epoch {int(epoch)}")
    fig.tight_layout()
    return fig


def fig_clusters(sig_rows, epoch):
    """Cluster map of patch tokens on the grid and each cluster's mean alpha signature."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = _grid_map(sig_rows, "cluster", epoch, 1)
    k = int(np.nanmax(labels)) + 1
    cmap = plt.get_cmap("tab10", k)
    axes[0].imshow(labels, cmap=cmap, vmin=-0.5, vmax=k - 0.5)
    axes[0].set_title(f"clusters of patch tokens by alpha signature, epoch {int(epoch)}")
    axes[0].axis("off")
    rows = [r for r in sig_rows if r["epoch"] == epoch and r["row"] >= 0]
    blocks = sorted({int(r["depth"]) for r in rows})
    for c in range(k):
        mean = [np.mean([r["alpha"] for r in rows if r["depth"] == b and r["cluster"] == c]) for b in blocks]
        n = sum(1 for r in rows if r["depth"] == blocks[0] and r["cluster"] == c)
        axes[1].plot(blocks, mean, marker="o", color=cmap(c), label=f"cluster {c} ({n} patches)")
    axes[1].set(xlabel="depth (block)", ylabel="alpha", title="cluster-mean signatures")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    return fig


CORRELATION_STYLES = {"patches": "-", "with_cls": "--", "with_dist": "-.", "with_reg": ":",
                      "patches_mean_removed": (0, (6, 2, 1, 2, 1, 2))}


def fig_correlation(corr_rows):
    """Mean r and mean |r| across depth per checkpoint (solid: patch tokens; the patches with each
    prefix group: dashed CLS, dash-dot distillation token, dotted registers; dash-dot-dot: the patches
    less the probe set's mean patch token), and mean r of each block across training; bands: their
    intervals over the probe images. With one checkpoint (weights analysed) no panel across training."""
    epochs = sorted({r["epoch"] for r in corr_rows})
    sets = list(dict.fromkeys(r["tokens"] for r in corr_rows))
    sites = dict(sorted({(r["depth"], r["site"]) for r in corr_rows}))
    cmap = plt.get_cmap("viridis")
    panels = 3 if len(epochs) > 1 else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    for ax, key in zip(axes[:2], ("mean_r", "mean_abs_r")):
        for i, e in enumerate(epochs):
            for tokens in sets:
                ls = CORRELATION_STYLES[tokens]
                line = sorted((r for r in corr_rows if r["epoch"] == e and r["tokens"] == tokens),
                              key=lambda r: r["depth"])
                x, colour = [r["depth"] for r in line], cmap(i / max(1, len(epochs) - 1))
                # The epochs by colour; each other token set's style once, in the first epoch's colour.
                label = f"epoch {int(e)}" if tokens == "patches" else tokens if i == 0 else None
                ax.plot(x, [r[key] for r in line], ls=ls, marker=".", color=colour, label=label)
                _band(ax, x, line, key, colour, len(epochs) * len(sets))
        _depth_axis(ax, sites)
        ax.set(title=f"{key.replace('_', ' ')} across depth", ylabel=key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if panels == 2:
        fig.tight_layout()
        return fig
    pcmap = plt.get_cmap("plasma")
    for i, site in enumerate(sites.values()):
        line = sorted((r for r in corr_rows if r["site"] == site and r["tokens"] == "patches"),
                      key=lambda r: r["epoch"])
        x, colour = [r["epoch"] for r in line], pcmap(i / max(1, len(sites) - 1))
        axes[2].plot(x, [r["mean_r"] for r in line], marker=".", color=colour, label=site)
        _band(axes[2], x, line, "mean_r", colour, len(sites))
    axes[2].set(title="mean r (patches) across training", xlabel="epoch")
    axes[2].legend(fontsize=6)
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Neuron statistics and attention (Probing Vision Transformer Attention)
# ------------------------------------------------------------------------------------------------

def fig_mi(mi_rows, decay_rows):
    """MI(d) curves per block at the last checkpoint, one panel per sublayer, MI at distance 1 across
    training per block, and the MI decay rate per block at the last checkpoint (the mi stage's
    decay.csv); bands and error bars:
    the half-sample intervals (first and last checkpoint). With one checkpoint (weights analysed) no
    panel across training."""
    last, rows = _last(mi_rows)
    subs = sorted({r["sublayer"] for r in rows})
    blocks = sorted({int(r["depth"]) for r in rows})
    cmap = plt.get_cmap("plasma")
    over_training = len({r["epoch"] for r in mi_rows}) > 1
    panels = len(subs) + 1 + over_training
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    for ax, sub in zip(axes, subs):
        for i, b in enumerate(blocks):
            line = sorted((r for r in rows if r["sublayer"] == sub and r["depth"] == b), key=lambda r: r["distance"])
            x, colour = [r["distance"] for r in line], cmap(i / max(1, len(blocks) - 1))
            ax.plot(x, [r["mi"] for r in line], marker=".", color=colour, label=f"block {b}")
            _band(ax, x, line, "mi", colour, len(blocks))
        ax.set(xlabel="distance on the patch grid", ylabel="MI (nats, shuffle-corrected)",
               title=f"MI vs distance: {sub} sublayer, epoch {int(last)}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if over_training:
        for i, b in enumerate(blocks):
            colour = cmap(i / max(1, len(blocks) - 1))
            for sub, ls in zip(subs, ("-", "--")):
                line = sorted((r for r in mi_rows if r["sublayer"] == sub and r["depth"] == b and r["distance"] == 1),
                              key=lambda r: r["epoch"])
                x = [r["epoch"] for r in line]
                axes[-2].plot(x, [r["mi"] for r in line], ls=ls, marker=".", color=colour)
                _errorbars(axes[-2], x, line, "mi", colour)
        axes[-2].set(xlabel="epoch", ylabel="MI at distance 1", title="across training (solid attn, dashed mlp)")
        axes[-2].grid(alpha=0.3)
    _, decay = _last(decay_rows)
    for sub, ls in zip(subs, ("-", "--")):
        rates = sorted((r["depth"], r["mi_decay_rate"]) for r in decay if r["sublayer"] == sub)
        axes[-1].plot([b for b, _ in rates], [v for _, v in rates], ls=ls, marker="o", label=sub)
    axes[-1].set(xlabel="depth (block)", ylabel="MI decay rate\n(share of nearest-distance MI lost per patch)",
                 title=f"decay of MI with distance, epoch {int(last)}")
    axes[-1].legend(fontsize=7)
    axes[-1].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fig_kurtosis_bowtie(kurt_rows, bowtie_rows):
    """Excess kurtosis per block and sublayer (median, 10-90% band) at the last checkpoint, and
    p(y|x) bowtie plots of the last block for a near and a far pair."""
    last, rows = _last(kurt_rows)
    subs = sorted({r["sublayer"] for r in rows})
    fig, axes = plt.subplots(1, 1 + 2 * len(subs), figsize=(4.2 * (1 + 2 * len(subs)), 3.8))
    for sub in subs:
        r = sorted((x for x in rows if x["sublayer"] == sub), key=lambda x: x["depth"])
        b = [x["depth"] for x in r]
        axes[0].plot(b, [x["kurtosis_median"] for x in r], marker="o", label=sub)
        axes[0].fill_between(b, [x["kurtosis_p10"] for x in r], [x["kurtosis_p90"] for x in r], alpha=0.2)
    axes[0].set(xlabel="depth (block)", ylabel="excess kurtosis", title=f"neuron kurtosis, epoch {int(last)}")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    block = max(r["depth"] for r in bowtie_rows)
    for ax, (sub, pair) in zip(axes[1:], [(s, p) for s in subs for p in ("near", "far")]):
        r = [x for x in bowtie_rows if x["sublayer"] == sub and x["pair"] == pair and x["depth"] == block]
        centres = np.unique([x["x"] for x in r])
        h = np.zeros((len(centres), len(centres)))
        for x in r:
            h[np.searchsorted(centres, x["x"]), np.searchsorted(centres, x["y"])] = x["p"]
        ax.imshow(h.T, origin="lower", extent=(centres[0], centres[-1], centres[0], centres[-1]), cmap="viridis")
        ax.set(xlabel="x (reference neuron, sd)", ylabel="y (sd)", title=f"p(y|x) {sub}, {pair} pair, block {int(block)}")
    fig.tight_layout()
    return fig


def fig_qk(head_rows, spectra_rows, angle_rows, binned_rows):
    """QK structure across depth (heads together) and per head at the last checkpoint, with error
    bars on the angle statistics (their intervals over the probe images; angles between norm1's
    outputs without its bias beta, and dashed the same with beta), singular values per block, and
    attention binned by angle (without beta) per block."""
    last, heads = _last(head_rows)
    together = sorted((r for r in heads if r["head"] == "all"), key=lambda r: r["depth"])
    _, ang = _last(angle_rows)
    ang = sorted(ang, key=lambda r: r["depth"])
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    b = [r["depth"] for r in together]
    axes[0].plot(b, [r["sym_mass_positive"] for r in together], marker="o", label="M_sym: positive share of Σ|λ|")
    axes[0].plot(b, [r["asym_sym_norm_ratio"] for r in together], marker="o", label="‖M_asym‖ / ‖M_sym‖")
    for key, label in (("share_obtuse", "share of angles > 90°"), ("spearman", "Spearman(angle, attention)")):
        both = f"{key}_with_beta" in ang[0]  # plot data from before the angles without β has one kind
        line, = axes[0].plot(b, [r[key] for r in ang], marker="o",
                             label=f"{label}, without norm1's β" if both else label)
        _errorbars(axes[0], b, ang, key, line.get_color())
        if both:
            axes[0].plot(b, [r[f"{key}_with_beta"] for r in ang], ls="--", marker=".", color=line.get_color(),
                         label=f"{label}, with β")
    per_head = [r for r in heads if r["head"] != "all"]
    axes[0].scatter([r["depth"] for r in per_head], [r["asym_sym_norm_ratio"] for r in per_head], s=8, c="grey",
                    label="ratio per head")
    axes[0].axhline(0.5, color="k", lw=0.5, ls=":")
    axes[0].set(xlabel="depth (block)", title=f"QK structure, epoch {int(last)}")
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    cmap = plt.get_cmap("plasma")
    _, spec = _last(spectra_rows)
    for ax, kind, title in ((axes[1], "singular_values", "singular values of W_Q W_K^T"),
                            (axes[2], "sym_eigenvalues", "eigenvalues of M_sym")):
        for i, blk in enumerate(b):
            v = [r["value"] for r in sorted((r for r in spec if r["kind"] == kind and r["depth"] == blk),
                                            key=lambda r: r["index"])]
            ax.plot(range(1, len(v) + 1), v, color=cmap(i / max(1, len(b) - 1)), label=f"block {int(blk)}")
        ax.set(xlabel="index", title=title)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=7)
    _, binned = _last(binned_rows)
    binned = [r for r in binned if r.get("vectors", "no_beta") == "no_beta"]
    for i, blk in enumerate(b):
        pts = sorted((r["angle"], r["attention"]) for r in binned if r["depth"] == blk)
        axes[3].plot([p[0] for p in pts], [p[1] for p in pts], marker=".", color=cmap(i / max(1, len(b) - 1)),
                     label=f"block {int(blk)}")
    axes[3].set(xlabel="angle between patch vectors, norm1 output without β (degrees)",
                ylabel="mean attention (heads averaged)", title="attention binned by angle")
    axes[3].grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# The zoo side by side: one line per model, depth relative to each model's number of blocks
# ------------------------------------------------------------------------------------------------

def _zoo_colours(ids):
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(ids)}


def _relative(rows, n_sites):
    return [r["depth"] / n_sites for r in rows]


# The zoo page's spectral figures: the image's representation, then the patch sets.
ZOO_ROLES = {"image": "the CLS token (the head's input for a model without one)",
             **{s: SAMPLE_SET_WORDS[s][0] for s in ("patches", "patch_mean")}}


def fig_zoo_spectral(results, role):
    """Every spectral metric across relative depth (0 = embedding, 1 = final norm) at each model's
    last checkpoint, one line per model. role: "image" (the set that stands for the image in the
    claims, tgo.activations.image_set: the CLS token, or the head's input without one), "patches"
    or "patch_mean"."""
    colours = _zoo_colours(results)
    fig, axes = _grid(len(SPECTRAL_METRICS))
    for ax, metric in zip(axes, SPECTRAL_METRICS):
        for m, r in results.items():
            sset = image_set(sample_set_names(r["layout"])) if role == "image" else role
            _, rows = _last(r["spectral_rows"])
            rows = sorted((x for x in rows if x["sample_set"] == sset), key=lambda x: x["depth"])
            ax.plot(_relative(rows, r["layout"]["n_blocks"] + 1), [x[metric] for x in rows], marker=".",
                    color=colours[m], label=f"{m} ({sset})")
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("relative depth")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    title = ZOO_ROLES[role]
    fig.suptitle(f"spectral geometry across depth: {title}")
    return fig


def fig_zoo_tokens(results):
    """Mean patch-token alpha and each prefix group's alpha across relative depth; inter-token
    correlation (mean r, mean |r|) of the patch tokens (solid), with each prefix group and less the
    probe set's mean patch token."""
    colours = _zoo_colours(results)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for m, r in results.items():
        n = r["layout"]["n_blocks"]
        _, depth = _last(r["token_depth"])
        depth = sorted(depth, key=lambda x: x["depth"])
        axes[0].plot(_relative(depth, n), [x["patch_alpha_mean"] for x in depth], marker=".", color=colours[m],
                     label=m)
        for key in [k for k in depth[0] if k.endswith(("_alpha", "_alpha_mean")) and not k.startswith("patch")]:
            group = key.split("_")[0]
            axes[0].plot(_relative(depth, n), [x[key] for x in depth], ls=PREFIX_STYLES[group][0],
                         marker=PREFIX_STYLES[group][1], ms=4, color=colours[m])
        _, corr = _last(r["correlation"])
        for tokens in dict.fromkeys(x["tokens"] for x in corr):
            rows = sorted((x for x in corr if x["tokens"] == tokens and x["site"].startswith("block_")),
                          key=lambda x: x["depth"])
            for ax, key in zip(axes[1:], ("mean_r", "mean_abs_r")):
                ax.plot(_relative(rows, n), [x[key] for x in rows], ls=CORRELATION_STYLES[tokens], marker=".",
                        color=colours[m], label=m if tokens == "patches" else None)
    axes[0].set(xlabel="relative depth (block / blocks)", ylabel="alpha",
                title="alpha: patches (solid), CLS --, dist -., registers :")
    axes[1].set(xlabel="relative depth (block / blocks)", title="inter-token mean r (patches solid; with CLS --, "
                "dist -., registers :; less the mean patch -..)")
    axes[2].set(xlabel="relative depth (block / blocks)", title="inter-token mean |r|")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_zoo_mi(results):
    """MI at distance 1 and the MI decay rate (the mi stage's) across relative depth (attention
    sublayer solid, MLP dashed), and the median excess kurtosis."""
    colours = _zoo_colours(results)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for m, r in results.items():
        n = r["layout"]["n_blocks"]
        _, curves = _last(r["mi_distance"])
        _, decay = _last(r["mi_decay"])
        _, kurt = _last(r["kurtosis"])
        for sub, ls in (("attn", "-"), ("mlp", "--")):
            blocks = sorted({int(x["depth"]) for x in curves if x["sublayer"] == sub})
            at1 = [min((x["distance"], x["mi"]) for x in curves if x["sublayer"] == sub and x["depth"] == b)[1]
                   for b in blocks]
            rates = {x["depth"]: x["mi_decay_rate"] for x in decay if x["sublayer"] == sub}
            rate = [rates[b] for b in blocks]
            x = [b / n for b in blocks]
            axes[0].plot(x, at1, ls=ls, marker=".", color=colours[m], label=m if sub == "attn" else None)
            axes[1].plot(x, rate, ls=ls, marker=".", color=colours[m])
            k = sorted((x for x in kurt if x["sublayer"] == sub), key=lambda x: x["depth"])
            axes[2].plot(_relative(k, n), [x["kurtosis_median"] for x in k], ls=ls, marker=".", color=colours[m])
    axes[0].set(title="MI at distance 1 (attn solid, mlp dashed)", ylabel="nats")
    axes[1].set(title="MI decay rate", ylabel="MI decay rate\n(share of nearest-distance MI lost per patch)")
    axes[2].set(title="median excess kurtosis")
    for ax in axes:
        ax.set_xlabel("relative depth (block / blocks)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_zoo_qk(results):
    """QK structure (heads together) and angle vs attention across relative depth; models whose
    attention is not bilinear (the qk stage skipped them) are left out."""
    colours = _zoo_colours(results)
    panels = (("sym_mass_positive", "M_sym: positive share of sum |lambda|"),
              ("asym_sym_norm_ratio", "||M_asym|| / ||M_sym||"),
              ("share_obtuse", "share of angles > 90 degrees (dashed: with norm1's bias)"),
              ("spearman", "Spearman(angle, attention) (dashed: with norm1's bias)"))
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    for m, r in results.items():
        if "skipped" in r["qk"]:
            continue
        n = r["layout"]["n_blocks"]
        _, heads = _last(r["qk_heads"])
        heads = sorted((x for x in heads if x["head"] == "all"), key=lambda x: x["depth"])
        _, angles = _last(r["qk_angles"])
        angles = sorted(angles, key=lambda x: x["depth"])
        for ax, (key, title) in zip(axes, panels):
            rows = heads if key in heads[0] else angles
            ax.plot(_relative(rows, n), [x[key] for x in rows], marker=".", color=colours[m], label=m)
            if f"{key}_with_beta" in rows[0]:
                ax.plot(_relative(rows, n), [x[f"{key}_with_beta"] for x in rows], ls="--", color=colours[m])
            ax.set(title=title, xlabel="relative depth (block / blocks)")
    skipped = [m for m, r in results.items() if "skipped" in r["qk"]]
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, title=f"skipped: {', '.join(skipped)}" if skipped else None)
    fig.tight_layout()
    return fig
