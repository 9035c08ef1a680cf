"""The query-key family's figures and its part of the pages (tgo.geometry.qk; the qk stage's plot
data): the symmetric and antisymmetric parts of W_Q W_K^T, their spectra, attention against the
angle between tokens, and the zoo's models side by side."""
import matplotlib.pyplot as plt

from tgo.figures.plot import errorbars, interval_words, last_checkpoint, relative, zoo_colours


def fig_qk(head_rows, spectra_rows, angle_rows, binned_rows):
    """QK structure across depth (heads together) and per head at the last checkpoint, with error
    bars on the angle statistics (their intervals over the probe images; angles between norm1's
    outputs without its bias beta, and dashed the same with beta), singular values per block, and
    attention binned by angle (without beta) per block."""
    last, heads = last_checkpoint(head_rows)
    together = sorted((r for r in heads if r["head"] == "all"), key=lambda r: r["depth"])
    _, ang = last_checkpoint(angle_rows)
    ang = sorted(ang, key=lambda r: r["depth"])
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    b = [r["depth"] for r in together]
    axes[0].plot(b, [r["sym_mass_positive"] for r in together], marker="o", label="M_sym: positive share of Σ|λ|")
    axes[0].plot(b, [r["asym_sym_norm_ratio"] for r in together], marker="o", label="‖M_asym‖ / ‖M_sym‖")
    for key, label in (("share_obtuse", "share of angles > 90°"), ("spearman", "Spearman(angle, attention)")):
        both = f"{key}_with_beta" in ang[0]  # plot data from before the angles without β has one kind
        line, = axes[0].plot(b, [r[key] for r in ang], marker="o",
                             label=f"{label}, without norm1's β" if both else label)
        errorbars(axes[0], b, ang, key, line.get_color())
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
    _, spec = last_checkpoint(spectra_rows)
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
    _, binned = last_checkpoint(binned_rows)
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


def fig_zoo_qk(results):
    """QK structure (heads together) and angle vs attention across relative depth; models whose
    attention is not bilinear (the qk stage skipped them) are left out."""
    colours = zoo_colours(results)
    panels = (("sym_mass_positive", "M_sym: positive share of sum |lambda|"),
              ("asym_sym_norm_ratio", "||M_asym|| / ||M_sym||"),
              ("share_obtuse", "share of angles > 90 degrees (dashed: with norm1's bias)"),
              ("spearman", "Spearman(angle, attention) (dashed: with norm1's bias)"))
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    for m, r in results.items():
        if "skipped" in r["metrics"]["qk"]:
            continue
        n = r["layout"]["n_blocks"]
        _, heads = last_checkpoint(r["qk_heads"])
        heads = sorted((x for x in heads if x["head"] == "all"), key=lambda x: x["depth"])
        _, angles = last_checkpoint(r["qk_angles"])
        angles = sorted(angles, key=lambda x: x["depth"])
        for ax, (key, title) in zip(axes, panels):
            rows = heads if key in heads[0] else angles
            ax.plot(relative(rows, n), [x[key] for x in rows], marker=".", color=colours[m], label=m)
            if f"{key}_with_beta" in rows[0]:
                ax.plot(relative(rows, n), [x[f"{key}_with_beta"] for x in rows], ls="--", color=colours[m])
            ax.set(title=title, xlabel="relative depth (block / blocks)")
    skipped = [m for m, r in results.items() if "skipped" in r["metrics"]["qk"]]
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, title=f"skipped: {', '.join(skipped)}" if skipped else None)
    fig.tight_layout()
    return fig


def report(r, params):
    """The report's part on query-key structure: its text and its figure [(name, caption, Figure)],
    none for a model whose attention is not bilinear (the qk stage skipped it)."""
    text = ("QK: M = W_Q W_K^T per head and for the heads together, split into symmetric and antisymmetric parts, "
            "with a delete-one-head jackknife; angles between the patch vectors entering attention (norm1's output "
            "without its bias beta, which is one vector added to every token; with beta beside it) against "
            f"attention averaged over heads ({r['tokens_used']['qk']['used']}).")
    if "skipped" in r["metrics"]["qk"]:
        return {"text": text, "figures": []}
    return {"text": text, "figures": [
        ("qk", "QK structure across depth (heads together; grey: per head; error bars on the share of obtuse angles "
         f"and the Spearman correlation: {interval_words(params['ci']['level'])}), singular values and M_sym "
         "eigenvalues per block, attention binned by angle",
         fig_qk(r["qk_heads"], r["qk_spectra"], r["qk_angles"], r["qk_attention_by_angle"]))]}


def zoo(results):
    """The zoo page's query-key figure [(name, caption, Figure)]."""
    return [("qk", "QK structure (heads together) and angle vs attention", fig_zoo_qk(results))]
