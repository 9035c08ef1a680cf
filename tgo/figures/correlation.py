"""The correlation family's figures and its part of the pages (tgo.geometry.correlation; the
correlation stage's plot data): inter-token correlation across depth and training, and the zoo's
models side by side."""
import matplotlib.pyplot as plt

from tgo.figures.plot import band, depth_axis, interval_words, last_checkpoint, relative, zoo_colours

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
                band(ax, x, line, key, colour, len(epochs) * len(sets))
        depth_axis(ax, sites)
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
        band(axes[2], x, line, "mean_r", colour, len(sites))
    axes[2].set(title="mean r (patches) across training", xlabel="epoch")
    axes[2].legend(fontsize=6)
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fig_zoo_correlation(results):
    """Inter-token correlation (mean r, mean |r|) across relative depth, one colour per model: the patch
    tokens (solid), with each prefix group, and less the probe set's mean patch token."""
    colours = zoo_colours(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m, r in results.items():
        n = r["layout"]["n_blocks"]
        _, corr = last_checkpoint(r["correlation"])
        for tokens in dict.fromkeys(x["tokens"] for x in corr):
            rows = sorted((x for x in corr if x["tokens"] == tokens and x["site"].startswith("block_")),
                          key=lambda x: x["depth"])
            for ax, key in zip(axes, ("mean_r", "mean_abs_r")):
                ax.plot(relative(rows, n), [x[key] for x in rows], ls=CORRELATION_STYLES[tokens], marker=".",
                        color=colours[m], label=m if tokens == "patches" else None)
    axes[0].set(title="inter-token mean r")
    axes[1].set(title="inter-token mean |r|")
    fig.suptitle("patch tokens solid; with CLS --, dist -., registers :; less the mean patch -..", fontsize=10)
    for ax in axes:
        ax.set_xlabel("relative depth (block / blocks)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def report(r, params):
    """The report's part on inter-token correlation: its text and its figure [(name, caption, Figure)]."""
    over_training = len({x["epoch"] for x in r["correlation"]}) > 1
    text = ("Inter-token Pearson correlation per image, averaged over token pairs and images "
            f"({r['tokens_used']['correlation']['used']}).")
    return {"text": text, "figures": [
        ("intertoken_correlation", "Inter-token correlation: mean r and mean |r| across depth per checkpoint (solid: "
         "patch tokens; dashed: with CLS; dash-dot: with the distillation token; dotted: with the registers; "
         "dash-dot-dot: the patch tokens less the probe set's mean patch token)"
         + (", and per block across training" if over_training else "")
         + f" (bands: {interval_words(params['ci']['level'])})", fig_correlation(r["correlation"]))]}


def zoo(results):
    """The zoo page's correlation figure [(name, caption, Figure)]."""
    return [("correlation", "Inter-token correlation across relative depth: mean r and mean |r|",
             fig_zoo_correlation(results))]
