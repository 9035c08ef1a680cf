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
