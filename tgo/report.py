"""The report: figures (matplotlib, PNG) and one self-contained HTML page with computed verdicts.

Verdicts are computed from the run's numbers by the functions below, never written by hand; each
carries the numbers behind it, and may well be "not observed".
"""
import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from tgo.geometry.information import decay_rate  # noqa: E402

SPECTRAL_METRICS = ("effective_rank", "rankme", "stable_rank", "participation_ratio", "spectral_entropy",
                    "spectral_entropy_normalized", "spectral_flatness", "anisotropy",
                    "mean_cosine_similarity", "alpha")
# TGO-I's claims: these rise over training, anisotropy falls.
TRAINING_CLAIMS = {"effective_rank": +1, "participation_ratio": +1, "spectral_entropy": +1,
                   "spectral_flatness": +1, "anisotropy": -1}
SET_TITLES = {"cls": "CLS token", "patches": "patch tokens, pooled", "patch_mean": "patch tokens, mean per image"}


def numeric_rows(rows):
    """CSV rows (strings) -> dicts with floats where the value parses as a number."""
    out = []
    for r in rows:
        d = {}
        for k, v in r.items():
            try:
                d[k] = float(v)
            except ValueError:
                d[k] = v
        out.append(d)
    return out


def _series(rows, site, sample_set, metric):
    pts = sorted((r["epoch"], r[metric]) for r in rows if r["site"] == site and r["sample_set"] == sample_set)
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def _verdict(share):
    if share >= 2 / 3:
        return "observed"
    return "partly observed" if share >= 1 / 3 else "not observed"


def training_trend_verdicts(rows):
    """For each claimed trend, over every (site, sample set) along the residual stream after the
    embedding: the share whose value moves in the claimed direction from the first to the last
    checkpoint, and the median Spearman correlation of the metric with the epoch."""
    verdicts = []
    pairs = sorted({(r["site"], r["sample_set"]) for r in rows if r["site"] != "embed"})
    for metric, sign in TRAINING_CLAIMS.items():
        moves, rhos, n = 0, [], 0
        for site, sset in pairs:
            epochs, values = _series(rows, site, sset, metric)
            if len(values) < 2 or not np.all(np.isfinite(values)):
                continue
            n += 1
            moves += int(sign * (values[-1] - values[0]) > 0)
            if np.ptp(values) > 0:
                rhos.append(spearmanr(epochs, values)[0])
        share = moves / n if n else float("nan")
        e, cls = _series(rows, "final_norm", "cls", metric)
        direction = "rises" if sign > 0 else "falls"
        verdicts.append({
            "claim": f"{metric.replace('_', ' ')} {direction} over training",
            "verdict": _verdict(share) if n else "not computable",
            "evidence": (f"{moves}/{n} (site, sample set) pairs {direction.rstrip('s')} from epoch "
                         f"{int(e[0])} to {int(e[-1])}; median Spearman rho with epoch "
                         f"{np.median(rhos) if rhos else float('nan'):+.2f}; final-norm CLS: "
                         f"{cls[0]:.4g} -> {cls[-1]:.4g}"),
        })
    return verdicts


def final_cls_verdicts(rows):
    """TGO-I: the final CLS representation has the highest effective rank and lowest anisotropy
    in the network. Compared across depth for the CLS token at the last checkpoint (same images,
    same sample count at every depth)."""
    last = max(r["epoch"] for r in rows)
    cls = [r for r in rows if r["epoch"] == last and r["sample_set"] == "cls"
           and np.isfinite(r["effective_rank"])]
    out = []
    for metric, pick, word in (("effective_rank", max, "highest"), ("anisotropy", min, "lowest")):
        best = pick(cls, key=lambda r: r[metric])
        final = next(r for r in cls if r["site"] == "final_norm")
        others = ", ".join(f"{r['site']} {r[metric]:.3g}" for r in cls)
        out.append({
            "claim": f"the final CLS representation has the {word} {metric.replace('_', ' ')}",
            "verdict": "observed" if best["site"] == "final_norm" else "not observed",
            "evidence": (f"epoch {int(last)}: final-norm CLS {final[metric]:.4g}; {word} is "
                         f"{best['site']} ({best[metric]:.4g}); all: {others}"),
        })
    return out


# ------------------------------------------------------------------------------------------------
# Figures
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
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def fig_across_depth(rows, sample_set):
    """Each metric across depth (embedding, blocks, final norm), one line per checkpoint."""
    sub = [r for r in rows if r["sample_set"] == sample_set]
    epochs = sorted({r["epoch"] for r in sub})
    sites = [s for _, s in sorted({(r["depth"], r["site"]) for r in sub})]
    cmap = plt.get_cmap("viridis")
    fig, axes = _grid(len(SPECTRAL_METRICS))
    for ax, metric in zip(axes, SPECTRAL_METRICS):
        for i, e in enumerate(epochs):
            pts = sorted((r["depth"], r[metric]) for r in sub if r["epoch"] == e)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
                    color=cmap(i / max(1, len(epochs) - 1)), label=f"epoch {int(e)}")
        ax.set_title(metric.replace("_", " "))
        ax.set_xticks(range(len(sites)), [s.replace("block_", "b") for s in sites], fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"across depth, per checkpoint: {SET_TITLES[sample_set]}")
    fig.tight_layout()
    return fig


def fig_across_training(rows, sample_set):
    """Each metric across training, one line per site (embedding, blocks, final norm)."""
    sub = [r for r in rows if r["sample_set"] == sample_set]
    sites = [s for _, s in sorted({(r["depth"], r["site"]) for r in sub})]
    cmap = plt.get_cmap("plasma")
    fig, axes = _grid(len(SPECTRAL_METRICS))
    for ax, metric in zip(axes, SPECTRAL_METRICS):
        for i, site in enumerate(sites):
            e, v = _series(sub, site, sample_set, metric)
            ax.plot(e, v, marker=".", color=cmap(i / max(1, len(sites) - 1)), label=site)
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"across training, per site: {SET_TITLES[sample_set]}")
    fig.tight_layout()
    return fig


def fig_eigenspectra(spectra, rows, sample_set, ranks):
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
    fig.suptitle(f"eigenspectra: {SET_TITLES[sample_set]}")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------------

def png_bytes(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _verdict_table(verdicts):
    colour = {"observed": "#1a7f37", "partly observed": "#9a6700", "not observed": "#cf222e"}
    rows = "".join(
        f"<tr><td>{html.escape(v['claim'])}</td><td style='color:{colour.get(v['verdict'], '#555')};"
        f"font-weight:bold'>{html.escape(v['verdict'])}</td><td>{html.escape(v['evidence'])}</td></tr>"
        for v in verdicts)
    return f"<table><tr><th>claim</th><th>verdict</th><th>numbers behind it</th></tr>{rows}</table>"


def render_html(title, summary, sections, params):
    """sections: [{"title", "text", "verdicts", "figures": [(caption, png bytes)]}]."""
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(summary)}</p>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s['title'])}</h2>")
        if s.get("text"):
            parts.append(f"<p>{html.escape(s['text'])}</p>")
        if s.get("verdicts"):
            parts.append(_verdict_table(s["verdicts"]))
        for caption, png in s.get("figures", []):
            data = base64.b64encode(png).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>Parameters of this run</h2><pre>"
                 + html.escape(yaml.safe_dump(params, sort_keys=False)) + "</pre>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "img{max-width:100%}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px;text-align:left;vertical-align:top}"
             "figure{margin:1.5em 0}figcaption{color:#555;font-size:13px}pre{background:#f6f8fa;padding:1em}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


# ------------------------------------------------------------------------------------------------
# Token geometry (seed 000)
# ------------------------------------------------------------------------------------------------

def alpha_transition_verdict(depth_rows):
    """Seed 000 (a): alpha signatures show a transition from lower to higher effective
    dimensionality across blocks, i.e. the mean patch-token alpha (decay rate) falls with depth.
    Observed when it is lower in the last block than in the first and the Spearman correlation of
    alpha with block index is below -0.5 (last checkpoint)."""
    last = max(r["epoch"] for r in depth_rows)
    rows = sorted((r for r in depth_rows if r["epoch"] == last), key=lambda r: r["block"])
    blocks = np.array([r["block"] for r in rows])
    alphas = np.array([r["patch_alpha_mean"] for r in rows])
    claim = "alpha signatures move from lower to higher effective dimensionality across blocks (alpha falls)"
    if not np.all(np.isfinite(alphas)):
        return {"claim": claim, "verdict": "not computable", "evidence": "alpha missing (see tokens.json)"}
    rho = spearmanr(blocks, alphas)[0] if np.ptp(alphas) > 0 else 0.0
    ok = alphas[-1] < alphas[0] and rho < -0.5
    return {"claim": claim, "verdict": "observed" if ok else "not observed",
            "evidence": (f"epoch {int(last)}, mean patch alpha per block: "
                         + ", ".join(f"{a:.2f}" for a in alphas) + f"; Spearman rho with block {rho:+.2f}")}


def coherence_verdict(coherence_rows, z_min=3.0):
    """Seed 000 (b): tokens cluster by signature into spatially coherent groups. Observed when
    grid-neighbouring patches share a cluster more often than under the permutation null by at
    least z_min standard deviations (last checkpoint)."""
    claim = "tokens cluster by alpha signature into spatially coherent groups"
    if not coherence_rows:
        return {"claim": claim, "verdict": "not computable", "evidence": "no clustering (alpha missing)"}
    c = max(coherence_rows, key=lambda r: r["epoch"])
    return {"claim": claim, "verdict": "observed" if c["z"] >= z_min else "not observed",
            "evidence": (f"epoch {int(c['epoch'])}: neighbours share a cluster {c['observed']:.3f} vs "
                         f"permutation null {c['null_mean']:.3f} +- {c['null_std']:.3f}; z = {c['z']:.1f} "
                         f"(threshold {z_min})")}


def u_shape_verdict(corr_rows):
    """Seed 000 (c): mean inter-token correlation across blocks is U-shaped: an interior block's
    mean r lies below both the first and the last block's (patch tokens, last checkpoint)."""
    last = max(r["epoch"] for r in corr_rows)
    rows = sorted((r for r in corr_rows if r["epoch"] == last and r["tokens"] == "patches"
                   and r["site"].startswith("block_")), key=lambda r: r["depth"])
    r = np.array([x["mean_r"] for x in rows])
    claim = "mean inter-token correlation across depth is U-shaped (interior minimum below both ends)"
    if len(r) < 3:
        return {"claim": claim, "verdict": "not computable", "evidence": f"only {len(r)} blocks"}
    i = 1 + int(np.argmin(r[1:-1]))
    ok = r[i] < r[0] and r[i] < r[-1]
    return {"claim": claim, "verdict": "observed" if ok else "not observed",
            "evidence": (f"epoch {int(last)}, mean r per block: " + ", ".join(f"{v:.3f}" for v in r)
                         + f"; interior minimum {rows[i]['site']} ({r[i]:.3f}) vs first {r[0]:.3f}, "
                         f"last {r[-1]:.3f}")}


def fig_alpha_depth(depth_rows):
    """Mean patch-token alpha across blocks (band: spread over tokens) and the CLS token's, per checkpoint."""
    epochs = sorted({r["epoch"] for r in depth_rows})
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, e in enumerate(epochs):
        rows = sorted((r for r in depth_rows if r["epoch"] == e), key=lambda r: r["block"])
        b = [r["block"] for r in rows]
        m = np.array([r["patch_alpha_mean"] for r in rows])
        s = np.array([r["patch_alpha_std"] for r in rows])
        colour = cmap(i / max(1, len(epochs) - 1))
        ax.plot(b, m, marker="o", color=colour, label=f"patches, epoch {int(e)}")
        ax.fill_between(b, m - s, m + s, color=colour, alpha=0.15)
        ax.plot(b, [r["cls_alpha"] for r in rows], ls="--", marker="x", color=colour)
    ax.set(xlabel="block", ylabel="alpha", title="alpha signature across depth (dashed: CLS)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _grid_map(sig_rows, value, epoch, block):
    rows = [r for r in sig_rows if r["epoch"] == epoch and r["block"] == block and r["row"] >= 0]
    h, w = int(max(r["row"] for r in rows)) + 1, int(max(r["col"] for r in rows)) + 1
    m = np.full((h, w), np.nan)
    for r in rows:
        m[int(r["row"]), int(r["col"])] = r[value]
    return m


def fig_alpha_maps(sig_rows, epoch):
    """Alpha of every patch token on the patch grid, one panel per block."""
    blocks = sorted({int(r["block"]) for r in sig_rows})
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
    blocks = sorted({int(r["block"]) for r in rows})
    for c in range(k):
        mean = [np.mean([r["alpha"] for r in rows if r["block"] == b and r["cluster"] == c]) for b in blocks]
        n = sum(1 for r in rows if r["block"] == blocks[0] and r["cluster"] == c)
        axes[1].plot(blocks, mean, marker="o", color=cmap(c), label=f"cluster {c} ({n} patches)")
    axes[1].set(xlabel="block", ylabel="alpha", title="cluster-mean signatures")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fig_correlation(corr_rows):
    """Mean r and mean |r| across depth per checkpoint (solid: patch tokens, dashed: with CLS), and
    mean r of each block across training."""
    epochs = sorted({r["epoch"] for r in corr_rows})
    sites = [s for _, s in sorted({(r["depth"], r["site"]) for r in corr_rows})]
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key in zip(axes[:2], ("mean_r", "mean_abs_r")):
        for i, e in enumerate(epochs):
            for tokens, ls in (("patches", "-"), ("all", "--")):
                pts = sorted((r["depth"], r[key]) for r in corr_rows if r["epoch"] == e and r["tokens"] == tokens)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], ls=ls, marker=".",
                        color=cmap(i / max(1, len(epochs) - 1)),
                        label=f"epoch {int(e)}" if tokens == "patches" else None)
        ax.set_xticks(range(len(sites)), [s.replace("block_", "b") for s in sites], fontsize=7)
        ax.set(title=f"{key.replace('_', ' ')} across depth", ylabel=key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    pcmap = plt.get_cmap("plasma")
    for i, site in enumerate(sites):
        pts = sorted((r["epoch"], r["mean_r"]) for r in corr_rows if r["site"] == site and r["tokens"] == "patches")
        axes[2].plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
                     color=pcmap(i / max(1, len(sites) - 1)), label=site)
    axes[2].set(title="mean r (patches) across training", xlabel="epoch")
    axes[2].legend(fontsize=6)
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Neuron statistics and attention (seed 002)
# ------------------------------------------------------------------------------------------------

def _last(rows):
    last = max(r["epoch"] for r in rows)
    return last, [r for r in rows if r["epoch"] == last]


def mi_verdicts(mi_rows):
    """Seed 002 (a) MI falls with distance, faster in later blocks; (b) the first block has the
    lowest MI. (a): observed when MI at the largest distance is below MI at distance 1 in at least
    2/3 of (sublayer, block) pairs and the decay rate (slope of log MI on distance) correlates
    negatively with the block index (Spearman < 0). (b): mean MI over distances and sublayers is
    lowest in block 1. Last checkpoint."""
    last, rows = _last(mi_rows)
    blocks = sorted({int(r["block"]) for r in rows})
    falls, rates = [], []
    for sub in sorted({r["sublayer"] for r in rows}):
        for b in blocks:
            c = sorted((r["distance"], r["mi"]) for r in rows if r["sublayer"] == sub and r["block"] == b)
            d, m = np.array([x[0] for x in c]), np.array([x[1] for x in c])
            falls.append(m[-1] < m[0])
            rates.append((b, decay_rate(d, m)))
    ok_rates = [(b, r) for b, r in rates if np.isfinite(r)]
    varies = len(ok_rates) > 2 and np.ptp([r for _, r in ok_rates]) > 0  # else Spearman is undefined
    rho = spearmanr([b for b, _ in ok_rates], [r for _, r in ok_rates])[0] if varies else np.nan
    share = np.mean(falls)
    mean_mi = {b: np.mean([r["mi"] for r in rows if r["block"] == b]) for b in blocks}
    lowest = min(mean_mi, key=mean_mi.get)
    return [
        {"claim": "MI falls with distance, and falls faster in later blocks",
         "verdict": "observed" if share >= 2 / 3 and rho < 0 else ("partly observed" if share >= 2 / 3 else "not observed"),
         "evidence": (f"epoch {int(last)}: MI at the largest distance below MI at distance 1 in "
                      f"{sum(falls)}/{len(falls)} (sublayer, block) pairs; Spearman rho of decay rate "
                      f"with block {rho:+.2f} (negative = faster decay later)")},
        {"claim": "the first block has the lowest MI",
         "verdict": "observed" if lowest == blocks[0] else "not observed",
         "evidence": f"epoch {int(last)}, mean MI per block: "
                     + ", ".join(f"b{b} {v:.4f}" for b, v in mean_mi.items())},
    ]


def qk_verdicts(head_rows, angle_rows):
    """Seed 002 (c)-(f), heads taken together, last checkpoint. (c) M_sym largely positive definite
    in every block: positive eigenvalues carry more than half of Σ|λ| in every block. (d) in the
    later half of the blocks most angles exceed 90° and ‖M_asym‖_F > ‖M_sym‖_F. (e) early blocks
    attend more to similar patches, late blocks to dissimilar ones: Spearman(angle, attention)
    averaged over the first half of the blocks < 0 < its average over the later half. (f) the
    last block's QK singular values are dominated by a few: the top 10% of them carry at least
    half of Σσ²."""
    last, heads = _last(head_rows)
    heads = sorted((r for r in heads if r["head"] == "all"), key=lambda r: r["block"])
    _, ang = _last(angle_rows)
    ang = sorted(ang, key=lambda r: r["block"])
    late = [r for r in heads if r["block"] > len(heads) / 2]
    late_ang = [r for r in ang if r["block"] > len(ang) / 2]
    early_rho = np.mean([r["spearman"] for r in ang if r["block"] <= len(ang) / 2]) if len(ang) > 1 else np.nan
    late_rho = np.mean([r["spearman"] for r in late_ang])
    mass = [r["sym_mass_positive"] for r in heads]
    fmt = lambda v: ", ".join(f"{x:.2f}" for x in v)  # noqa: E731
    return [
        {"claim": "M_sym is largely positive definite in every block",
         "verdict": "observed" if min(mass) > 0.5 else "not observed",
         "evidence": f"epoch {int(last)}, positive share of Σ|λ(M_sym)| per block: {fmt(mass)}"},
        {"claim": "in later blocks most angles exceed 90° and the antisymmetric part outweighs the symmetric",
         "verdict": ("observed" if all(r["share_obtuse"] > 0.5 for r in late_ang) and all(r["asym_sym_ratio"] > 1 for r in late)
                     else "not observed"),
         "evidence": (f"blocks {[int(r['block']) for r in late]}: share of angles > 90° "
                      f"{fmt([r['share_obtuse'] for r in late_ang])}; ‖M_asym‖/‖M_sym‖ "
                      f"{fmt([r['asym_sym_ratio'] for r in late])}")},
        {"claim": "early blocks attend more to similar patches, late blocks to dissimilar ones",
         "verdict": ("not computable" if not np.isfinite(early_rho) else
                     "observed" if early_rho < 0 < late_rho else "not observed"),
         "evidence": (f"Spearman rho(angle, attention) per block: {fmt([r['spearman'] for r in ang])}; "
                      f"mean over the first half {early_rho:+.2f}, over the later half {late_rho:+.2f}")},
        {"claim": "the last block's QK singular values are dominated by a few",
         "verdict": "observed" if heads[-1]["sv_decay"] >= 0.5 else "not observed",
         "evidence": (f"last block: top 10% of singular values carry {heads[-1]['sv_decay']:.2f} of Σσ², "
                      f"σ1² alone {heads[-1]['sv_top_share']:.2f}")},
    ]


def fig_mi(mi_rows):
    """MI(d) curves per block at the last checkpoint, one panel per sublayer, and MI at distance 1
    across training per block."""
    last, rows = _last(mi_rows)
    subs = sorted({r["sublayer"] for r in rows})
    blocks = sorted({int(r["block"]) for r in rows})
    cmap = plt.get_cmap("plasma")
    fig, axes = plt.subplots(1, len(subs) + 1, figsize=(5 * (len(subs) + 1), 4))
    for ax, sub in zip(axes, subs):
        for i, b in enumerate(blocks):
            c = sorted((r["distance"], r["mi"]) for r in rows if r["sublayer"] == sub and r["block"] == b)
            ax.plot([x[0] for x in c], [x[1] for x in c], marker=".", color=cmap(i / max(1, len(blocks) - 1)),
                    label=f"block {b}")
        ax.set(xlabel="distance on the patch grid", ylabel="MI (nats, shuffle-corrected)",
               title=f"MI vs distance: {sub} sublayer, epoch {int(last)}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    for i, b in enumerate(blocks):
        for sub, ls in zip(subs, ("-", "--")):
            pts = sorted((r["epoch"], r["mi"]) for r in mi_rows
                         if r["sublayer"] == sub and r["block"] == b and r["distance"] == 1)
            axes[-1].plot([p[0] for p in pts], [p[1] for p in pts], ls=ls, marker=".",
                          color=cmap(i / max(1, len(blocks) - 1)))
    axes[-1].set(xlabel="epoch", ylabel="MI at distance 1", title="across training (solid attn, dashed mlp)")
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
        r = sorted((x for x in rows if x["sublayer"] == sub), key=lambda x: x["block"])
        b = [x["block"] for x in r]
        axes[0].plot(b, [x["kurtosis_median"] for x in r], marker="o", label=sub)
        axes[0].fill_between(b, [x["kurtosis_p10"] for x in r], [x["kurtosis_p90"] for x in r], alpha=0.2)
    axes[0].set(xlabel="block", ylabel="excess kurtosis", title=f"neuron kurtosis, epoch {int(last)}")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    block = max(r["block"] for r in bowtie_rows)
    for ax, (sub, pair) in zip(axes[1:], [(s, p) for s in subs for p in ("near", "far")]):
        r = [x for x in bowtie_rows if x["sublayer"] == sub and x["pair"] == pair and x["block"] == block]
        centres = np.unique([x["x"] for x in r])
        h = np.zeros((len(centres), len(centres)))
        for x in r:
            h[np.searchsorted(centres, x["x"]), np.searchsorted(centres, x["y"])] = x["p"]
        ax.imshow(h.T, origin="lower", extent=(centres[0], centres[-1], centres[0], centres[-1]), cmap="viridis")
        ax.set(xlabel="x (reference neuron, sd)", ylabel="y (sd)", title=f"p(y|x) {sub}, {pair} pair, block {int(block)}")
    fig.tight_layout()
    return fig


def fig_qk(head_rows, spectra_rows, angle_rows, binned_rows):
    """QK structure across depth (heads together) and per head at the last checkpoint, singular
    values per block, and attention binned by angle per block."""
    last, heads = _last(head_rows)
    together = sorted((r for r in heads if r["head"] == "all"), key=lambda r: r["block"])
    _, ang = _last(angle_rows)
    ang = sorted(ang, key=lambda r: r["block"])
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    b = [r["block"] for r in together]
    axes[0].plot(b, [r["sym_mass_positive"] for r in together], marker="o", label="M_sym: positive share of Σ|λ|")
    axes[0].plot(b, [r["asym_sym_ratio"] for r in together], marker="o", label="‖M_asym‖ / ‖M_sym‖")
    axes[0].plot(b, [r["share_obtuse"] for r in ang], marker="o", label="share of angles > 90°")
    axes[0].plot(b, [r["spearman"] for r in ang], marker="o", label="Spearman(angle, attention)")
    per_head = [r for r in heads if r["head"] != "all"]
    axes[0].scatter([r["block"] for r in per_head], [r["asym_sym_ratio"] for r in per_head], s=8, c="grey",
                    label="ratio per head")
    axes[0].axhline(0.5, color="k", lw=0.5, ls=":")
    axes[0].set(xlabel="block", title=f"QK structure, epoch {int(last)}")
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    cmap = plt.get_cmap("plasma")
    _, spec = _last(spectra_rows)
    for ax, kind, title in ((axes[1], "singular_values", "singular values of W_Q W_K^T"),
                            (axes[2], "sym_eigenvalues", "eigenvalues of M_sym")):
        for i, blk in enumerate(b):
            v = [r["value"] for r in sorted((r for r in spec if r["kind"] == kind and r["block"] == blk),
                                            key=lambda r: r["index"])]
            ax.plot(range(1, len(v) + 1), v, color=cmap(i / max(1, len(b) - 1)), label=f"block {int(blk)}")
        ax.set(xlabel="index", title=title)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=7)
    _, binned = _last(binned_rows)
    for i, blk in enumerate(b):
        pts = sorted((r["angle"], r["attention"]) for r in binned if r["block"] == blk)
        axes[3].plot([p[0] for p in pts], [p[1] for p in pts], marker=".", color=cmap(i / max(1, len(b) - 1)),
                     label=f"block {int(blk)}")
    axes[3].set(xlabel="angle between patch vectors (degrees)", ylabel="mean attention (heads averaged)",
                title="attention binned by angle")
    axes[3].grid(alpha=0.3)
    fig.tight_layout()
    return fig
