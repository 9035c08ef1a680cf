"""The spectral family's figures and its part of the pages (tgo.geometry.spectral; the spectral
stage's plot data): each metric across depth and across training, eigenspectra with the alpha fit,
the metrics against the number of probe images, and the zoo's models side by side."""
import matplotlib.pyplot as plt
import numpy as np

from tgo.activations import SAMPLE_SET_WORDS, image_set, sample_set_names, sample_set_words
from tgo.figures.plot import (band, clipped_text, depth_axis, errorbars, grid, interval_words,
                              last_checkpoint, relative, zoo_colours)
from tgo.runs import HEADLINE_METRICS, SPECTRAL_METRICS

# The zoo page's spectral figures: the image's representation, then the patch sets.
ZOO_ROLES = {"image": "the CLS token (the head's input for a model without one)",
             **{s: SAMPLE_SET_WORDS[s][0] for s in ("patches", "patch_mean")}}


def _metric_panels(lines, suptitle, x_axis, bands=True, legend_size=7):
    """One panel per spectral metric, one line per entry of `lines` ([(label, colour, x, rows)]):
    a model's checkpoints or sites, or the zoo's models. x_axis: {depth: site} for the depth axis,
    or the x label; bands: each line's interval as a band."""
    fig, axes = grid(len(SPECTRAL_METRICS))
    for ax, metric in zip(axes, SPECTRAL_METRICS):
        for label, colour, x, rows in lines:
            ax.plot(x, [r[metric] for r in rows], marker=".", color=colour, label=label)
            if bands:
                band(ax, x, rows, metric, colour, len(lines))
        ax.set_title(metric.replace("_", " "))
        if isinstance(x_axis, dict):
            depth_axis(ax, x_axis)
        else:
            ax.set_xlabel(x_axis)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=legend_size)
    fig.suptitle(suptitle)
    return fig


def fig_across_depth(rows, sample_set, title):
    """Each metric across depth (embedding, blocks, final norm), one line per checkpoint, with its
    interval as a band."""
    sub = [r for r in rows if r["sample_set"] == sample_set]
    epochs = sorted({r["epoch"] for r in sub})
    cmap = plt.get_cmap("viridis")
    lines = []
    for i, e in enumerate(epochs):
        line = sorted((r for r in sub if r["epoch"] == e), key=lambda r: r["depth"])
        lines.append((f"epoch {int(e)}", cmap(i / max(1, len(epochs) - 1)), [r["depth"] for r in line], line))
    return _metric_panels(lines, f"across depth, per checkpoint: {title}",
                          dict(sorted({(r["depth"], r["site"]) for r in sub})))


def fig_across_training(rows, sample_set, title):
    """Each metric across training, one line per site (embedding, blocks, final norm), with its
    interval as a band."""
    sub = [r for r in rows if r["sample_set"] == sample_set]
    sites = [s for _, s in sorted({(r["depth"], r["site"]) for r in sub})]
    cmap = plt.get_cmap("plasma")
    lines = []
    for i, site in enumerate(sites):
        line = sorted((r for r in sub if r["site"] == site), key=lambda r: r["epoch"])
        lines.append((site, cmap(i / max(1, len(sites) - 1)), [r["epoch"] for r in line], line))
    return _metric_panels(lines, f"across training, per site: {title}", "epoch", legend_size=6)


def fig_zoo_spectral(results, role):
    """Every spectral metric across relative depth (0 = embedding, 1 = final norm) at each model's
    last checkpoint, one line per model. role: "image" (the set that stands for the image in the
    claims, tgo.activations.image_set: the CLS token, or the head's input without one), "patches"
    or "patch_mean"."""
    colours = zoo_colours(results)
    lines = []
    for m, r in results.items():
        sset = image_set(sample_set_names(r["layout"])) if role == "image" else role
        _, rows = last_checkpoint(r["spectral_rows"])
        rows = sorted((x for x in rows if x["sample_set"] == sset), key=lambda x: x["depth"])
        lines.append((f"{m} ({sset})", colours[m], relative(rows, r["layout"]["n_blocks"] + 1), rows))
    return _metric_panels(lines, f"spectral geometry across depth: {ZOO_ROLES[role]}", "relative depth",
                          bands=False)


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
    _, full = last_checkpoint([r for r in spectral_rows if r["sample_set"] == sample_set])
    cmap = plt.get_cmap("plasma")
    fig, axes = grid(len(HEADLINE_METRICS))
    for ax, metric in zip(axes, HEADLINE_METRICS):
        for j, site in enumerate(shown):
            # Colour by depth as in fig_across_training, stopping short of plasma's pale yellow end.
            colour = cmap(0.85 * sites.index(site) / max(1, len(sites) - 1))
            pts = sorted((r["n_images"], r[metric]) for r in sub if r["site"] == site)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", color=colour, label=site)
            # Nudge each site's bar sideways so that the bars at N do not hide one another.
            nudge = 2 ** (0.04 * (j - (len(shown) - 1) / 2))
            errorbars(ax, [sizes[-1] * nudge], [r for r in full if r["site"] == site][:1], metric, colour)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(int(n)) for n in sizes])
        ax.minorticks_off()
        ax.set(title=metric.replace("_", " "), xlabel="number of probe images")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"against the number of probe images, last checkpoint: {title}")
    return fig


def report(r, params):
    """The report's spectral section: its text, its figures [(name, caption, Figure)] and the
    subsection on the number of probe images."""
    rows = r["spectral_rows"]
    ranks = tuple(r["metrics"]["spectral"]["alpha_ranks"])  # as fitted: a small probe set brings the window down
    titles = {name: title for name, (title, _) in sample_set_words(r["layout"]).items()}
    epochs = sorted({int(x["epoch"]) for x in rows})
    bands = interval_words(params["ci"]["level"])
    text = (f"Covariance eigenspectra of the residual stream (embedding, every block's output, "
            f"final norm) for {len(epochs)} checkpoints (epochs {epochs}) and {len(titles)} sample sets: "
            + "; ".join(titles.values()) + f". Alpha is fitted over ranks {ranks[0]}..{ranks[1]}"
            + f"{clipped_text(ranks, params['spectral'])}. "
            + ("The CLS token at the embedding is the same vector for every image, so its spectrum "
               "is empty (its metrics are missing). " if "cls" in titles else "")
            + f"Tokens: {r['tokens_used']['spectral']['used']}.")
    figures = []
    for s, title in titles.items():
        figures.append((f"spectral_depth_{s}", f"Each metric across depth, one line per checkpoint (bands: {bands}; "
                        f"normalized spectral entropy has none) — {title}", fig_across_depth(rows, s, title)))
        if len(epochs) > 1:  # one checkpoint (weights analysed): nothing to draw across training
            figures.append((f"spectral_training_{s}", f"Each metric across training, one line per site (bands: "
                            f"{bands}) — {title}", fig_across_training(rows, s, title)))
        figures.append((f"eigenspectra_{s}", f"Eigenspectra (log-log) with the alpha fit — {title}",
                        fig_eigenspectra(r["eigenspectra"], rows, s, ranks, title)))
    return {"text": text, "figures": figures, "subsections": _sample_size_section(r, titles, params["ci"]["level"])}


def _sample_size_section(r, titles, level):
    """The part on the number of probe images: which metrics are still moving at N (the spectral
    stage's still_moving.csv) and their figures; none for plot data written before sample sizes."""
    sizes = sorted({int(x["n_images"]) for x in r["sample_size"]})
    if len(sizes) < 2:
        return []
    table = []
    for s, title in titles.items():
        moving = {}
        for x in r["still_moving"]:
            if x["sample_set"] == s:
                moving.setdefault(x["metric"], []).append(x["site"])
        table.append((title, "; ".join(f"{m.replace('_', ' ')}: {', '.join(sites)}" for m, sites in moving.items())
                      or "none"))
    return [{"title": "Spectral geometry — how many probe images", "subsection": True,
             "text": (f"The headline metrics at the last checkpoint on nested random subsets of the probe images "
                      f"({', '.join(map(str, sizes))} images). A metric at a site is still moving at N = "
                      f"{sizes[-1]} when going from N/2 to N images changes it by more than the half-width of its "
                      f"{100 * level:g}% interval at N, |value(N) - value(N/2)| > (high - low) / 2: its value still "
                      "depends on how many images were probed, beyond what the interval accounts for."),
             "table": (("sample set", f"still moving at N = {sizes[-1]} (metric: sites)"), table),
             "figures": [(f"sample_size_{s}", f"Each headline metric against the number of probe images, one line "
                          "per site (where there are more than six: the final norm and five evenly spaced blocks); "
                          f"error bars at N: {interval_words(level)} — {title}",
                          fig_sample_size(r["sample_size"], r["spectral_rows"], s, title))
                         for s, title in titles.items() if any(x["sample_set"] == s for x in r["sample_size"])]}]


def zoo(results):
    """The zoo page's spectral figures [(name, caption, Figure)]."""
    return [(f"spectral_{role}", f"Every spectral metric across depth: {title}", fig_zoo_spectral(results, role))
            for role, title in ZOO_ROLES.items()]
