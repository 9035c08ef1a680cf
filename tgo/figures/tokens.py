"""The token family's figures and its part of the pages (tgo.geometry.tokens; the tokens stage's
plot data): alpha signatures across depth and on the patch grid, token clusters, and the zoo's
models side by side."""
import matplotlib.pyplot as plt
import numpy as np

from tgo.figures.plot import clipped_text, errorbars, grid, interval_words, last_checkpoint, relative, zoo_colours

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
                errorbars(ax, b, rows, key, "k")
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
    fig, axes = grid(len(blocks), width=3, height=2.8, cols=min(6, len(blocks)))
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


def fig_zoo_tokens(results):
    """Mean patch-token alpha and each prefix group's alpha across relative depth, one colour per model."""
    colours = zoo_colours(results)
    fig, ax = plt.subplots(figsize=(7, 4))
    for m, r in results.items():
        n = r["layout"]["n_blocks"]
        _, depth = last_checkpoint(r["token_depth"])
        depth = sorted(depth, key=lambda x: x["depth"])
        ax.plot(relative(depth, n), [x["patch_alpha_mean"] for x in depth], marker=".", color=colours[m], label=m)
        for key in [k for k in depth[0] if k.endswith(("_alpha", "_alpha_mean")) and not k.startswith("patch")]:
            group = key.split("_")[0]
            ax.plot(relative(depth, n), [x[key] for x in depth], ls=PREFIX_STYLES[group][0],
                    marker=PREFIX_STYLES[group][1], ms=4, color=colours[m])
    ax.set(xlabel="relative depth (block / blocks)", ylabel="alpha",
           title="alpha: patches (solid), CLS --, dist -., registers :")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def report(r, params):
    """The report's part on token alpha signatures: its text and its figures [(name, caption, Figure)]."""
    tokens, tcfg = r["metrics"]["tokens"], params["tokens"]
    bands = interval_words(params["ci"]["level"])
    last = max(x["epoch"] for x in r["token_depth"])
    text = (f"Alpha of every token's covariance spectrum over the probe images at every block's "
            f"output (ranks {tokens['alpha_ranks'][0]}..{tokens['alpha_ranks'][1]}"
            f"{clipped_text(tokens['alpha_ranks'], tcfg)}); patch tokens clustered by their alpha signatures "
            f"({tcfg['cluster_method']}, {tcfg['n_clusters']} clusters), with the share of 4-neighbour patches in "
            f"one cluster against {tcfg['n_permutations']} label permutations ({r['tokens_used']['tokens']['used']}).")
    prefix = ", ".join(r["layout"]["prefix_tokens"]) or "none"
    figures = [("alpha_depth", "Alpha across depth: patch tokens (mean; shaded band = spread over tokens, +-1 sd) "
                f"and the prefix tokens ({prefix}), per checkpoint; black error bars (last checkpoint): {bands}",
                fig_alpha_depth(r["token_depth"])),
               ("alpha_maps", f"Alpha maps on the patch grid per block, epoch {int(last)}",
                fig_alpha_maps(r["signatures"], last))]
    if r["coherence"]:
        figures.append(("token_clusters", f"Token clusters on the grid and cluster-mean signatures, epoch {int(last)}",
                        fig_clusters(r["signatures"], last)))
    return {"text": text, "figures": figures}


def zoo(results):
    """The zoo page's token figure [(name, caption, Figure)]."""
    return [("tokens", "Alpha of the patch tokens and of each prefix group across relative depth",
             fig_zoo_tokens(results))]
