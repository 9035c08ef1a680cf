"""The neuron family's figures and its part of the pages (tgo.geometry.information; the mi stage's
plot data): mutual information against distance on the patch grid and its decay, excess kurtosis
and bowtie plots, and the zoo's models side by side."""
import matplotlib.pyplot as plt
import numpy as np

from tgo.figures.plot import band, errorbars, last_checkpoint, relative, zoo_colours


def fig_mi(mi_rows, decay_rows):
    """MI(d) curves per block at the last checkpoint, one panel per sublayer, MI at distance 1 across
    training per block, and the MI decay rate per block at the last checkpoint (the mi stage's
    decay.csv); bands and error bars:
    the half-sample intervals (first and last checkpoint). With one checkpoint (weights analysed) no
    panel across training."""
    last, rows = last_checkpoint(mi_rows)
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
            band(ax, x, line, "mi", colour, len(blocks))
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
                errorbars(axes[-2], x, line, "mi", colour)
        axes[-2].set(xlabel="epoch", ylabel="MI at distance 1", title="across training (solid attn, dashed mlp)")
        axes[-2].grid(alpha=0.3)
    _, decay = last_checkpoint(decay_rows)
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
    last, rows = last_checkpoint(kurt_rows)
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


def fig_zoo_mi(results):
    """MI at distance 1 and the MI decay rate (the mi stage's) across relative depth (attention
    sublayer solid, MLP dashed), and the median excess kurtosis."""
    colours = zoo_colours(results)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for m, r in results.items():
        n = r["layout"]["n_blocks"]
        _, curves = last_checkpoint(r["mi_distance"])
        _, decay = last_checkpoint(r["mi_decay"])
        _, kurt = last_checkpoint(r["kurtosis"])
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
            axes[2].plot(relative(k, n), [x["kurtosis_median"] for x in k], ls=ls, marker=".", color=colours[m])
    axes[0].set(title="MI at distance 1 (attn solid, mlp dashed)", ylabel="nats")
    axes[1].set(title="MI decay rate", ylabel="MI decay rate\n(share of nearest-distance MI lost per patch)")
    axes[2].set(title="median excess kurtosis")
    for ax in axes:
        ax.set_xlabel("relative depth (block / blocks)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def report(r, params):
    """The report's part on neuron statistics: its text and its figures [(name, caption, Figure)]."""
    s = r["metrics"]["mi"]
    over_training = len({x["epoch"] for x in r["mi_distance"]}) > 1
    text = (f"Mutual information between a neuron at a central reference patch (each sampled channel "
            f"from one of {', '.join(map(str, map(tuple, s['references'])))} in turn) and the same "
            f"channel at each grid distance (Euclidean, rounded; distances {s['distances']}"
            + "".join(f"; distance {d['distance']} left out, {d['reason']}" for d in s["dropped_distances"])
            + f"), averaged over {s['n_channels']} sampled channels, {s['estimator']} estimator minus the mean of "
            f"{s['n_shuffles']} shuffle baselines, {s['n_images']} images, for the attention and MLP sublayer "
            f"outputs; intervals from {s['half_samples']} half-samples of the images at epochs "
            f"{s['replicate_epochs']}; excess kurtosis of all neurons; p(y|x) for a near and a far pair "
            f"({r['tokens_used']['mi']['used']}).")
    return {"text": text, "figures": [
        ("mi_distance", "MI vs distance per block (last checkpoint), "
         + ("MI at distance 1 across training " if over_training else "")
         + "and the MI decay rate per block (bands and error bars: half-sample intervals at the first and last "
         "checkpoint)", fig_mi(r["mi_distance"], r["mi_decay"])),
        ("kurtosis_bowtie", "Excess kurtosis per block; bowtie plots p(y|x) of the last block",
         fig_kurtosis_bowtie(r["kurtosis"], r["bowtie"]))]}


def zoo(results):
    """The zoo page's neuron figure [(name, caption, Figure)]."""
    return [("mi", "MI at distance 1, MI decay rate (share of the nearest distance's MI lost per patch), excess "
             "kurtosis", fig_zoo_mi(results))]
