"""tokens: per checkpoint, the alpha signature of every token across blocks (patches, and the
prefix tokens as their own groups: CLS, distillation token, registers), clusters of patch tokens by
signature and their spatial coherence -> reports/tokens/, reports/metrics/tokens.json (with
--zoo <id>: the zoo model's, tgo.runs)."""
import numpy as np

from tgo import activations
from tgo.activations import each_checkpoint, prefix_groups, site_name, tokens_used, write_tokens_used
from tgo.geometry.spectral import stage_alpha_window
from tgo.geometry.stats import image_groups, interval
from tgo.geometry.tokens import alpha_signatures, cluster_signatures, jackknife_alpha_signatures, spatial_coherence
from tgo.io import TGOError, atomic_dir, run_stage, write_csv, write_json
from tgo.params import load
from tgo.runs import INIT, from_argv


def main():
    run = from_argv()
    params = load("tokens", "ci")
    cfg, ci = params["tokens"], params["ci"]
    checkpoints = activations.checkpoints(run.activations)
    meta = checkpoints[0][1]
    n_patches = meta["grid"][0] * meta["grid"][1]
    if cfg["n_clusters"] > n_patches:
        raise TGOError(f"tokens.n_clusters={cfg['n_clusters']}: choose 2..{n_patches} (the patch count)")
    # A small probe set holds fewer ranks: the window comes down to fit, with a note.
    ranks = stage_alpha_window("tokens.alpha_ranks", cfg["alpha_ranks"], meta["n_images"], meta["dim"],
                               ci["groups"])
    cfg = {**cfg, "alpha_ranks": list(ranks)}
    prefix = prefix_groups(meta["prefix_tokens"])

    untrained = run.activations / INIT
    with atomic_dir(run.plots("tokens")) as tmp:
        depth, coherence, shape = analyse(checkpoints, cfg, ci, prefix, tmp)
        if untrained.is_dir():  # pretrained weights: their untrained network, for the claims
            analyse(activations.checkpoints(untrained), cfg, ci, prefix, tmp / INIT)

    last = max(r["epoch"] for r in depth)
    at_last = [r for r in depth if r["epoch"] == last]
    summary = {"epoch": last, "alpha_ranks": list(ranks), "ci_level": ci["level"]}
    for key in [k for k in at_last[0] if "alpha" in k and not k.endswith("_std")]:
        summary[key] = {r["site"]: r[key] for r in at_last}
    last_coh = [c for c in coherence if c["epoch"] == last]
    if last_coh:
        summary["coherence"] = {k: last_coh[0][k] for k in ("neighbour_share", "null_mean", "null_std", "z")}
    write_json(run.metrics("tokens"), summary)
    print(f"alpha signatures of {shape[1]} tokens x {shape[0]} blocks for "
          f"{len({r['epoch'] for r in depth})} checkpoints{' and the untrained network' if untrained.is_dir() else ''}"
          f"; {cfg['n_clusters']} {cfg['cluster_method']} clusters"
          + f"; alpha window {ranks}; {used_text(meta, prefix)} -> {run.plots('tokens')}, {run.metrics('tokens')}")


def used_text(meta, prefix):
    return (f"{tokens_used(meta)}; alpha of every token, prefix tokens as their own groups "
            f"({', '.join(prefix) or 'none'}); clusters of the patch tokens only")


def analyse(checkpoints, cfg, ci, prefix, out):
    """Every checkpoint's alpha signatures, clusters and (first and last checkpoint) jackknife
    replicates into the plot data directory `out`; returns (depth rows, coherence rows, the shape
    (blocks, tokens) of the signatures)."""
    ranks = tuple(cfg["alpha_ranks"])
    meta = checkpoints[0][1]
    groups = image_groups(meta["n_images"], ci["groups"], ci["seed"])
    # Intervals at the first checkpoint (the untrained network, the null every claim is compared with)
    # and the last, paired through the same image groups.
    with_ci = {checkpoints[0][0], checkpoints[-1][0]}
    signatures, depth, coherence, replicates = [], [], [], []
    for act_dir, meta in each_checkpoint(checkpoints):
        p0, (gh, gw), n_blocks = meta["num_prefix_tokens"], meta["grid"], meta["n_blocks"]
        residual = activations.load(act_dir, "residual")
        if act_dir in with_ci:
            alphas, r2, reps = jackknife_alpha_signatures(residual, groups, ranks)
        else:
            (alphas, r2), reps = alpha_signatures(residual, ranks), None
        patch_sig = alphas[:, p0:].T  # (patches, blocks): prefix tokens are never clustered
        labels = np.full(len(patch_sig), -1)
        if np.all(np.isfinite(patch_sig)):
            labels = cluster_signatures(patch_sig, cfg["n_clusters"], cfg["cluster_method"], cfg["seed"])
            coh = spatial_coherence(labels, (gh, gw), cfg["n_permutations"], cfg["seed"])
            coherence.append({"epoch": meta["epoch"], **coh})
        for b in range(n_blocks):
            site = site_name(b + 1, n_blocks)
            patches = alphas[b, p0:]
            row = {"epoch": meta["epoch"], "site": site, "depth": b + 1}
            # A group's alpha: its token's, or the mean over its tokens (the registers).
            means = {f"{g}_alpha" if len(idx) == 1 else f"{g}_alpha_mean": idx for g, idx in prefix.items()}
            means["patch_alpha_mean"] = slice(p0, None)
            row.update({k: np.mean(alphas[b, idx]) for k, idx in means.items()})
            row.update(patch_alpha_std=np.std(patches), patch_r2_mean=np.mean(r2[b, p0:]))
            rep = {k: reps[:, b, idx].mean(axis=1) for k, idx in means.items()} if reps is not None else {}
            for k in means:  # no interval between the first and the last checkpoint
                row[f"{k}_ci_low"], row[f"{k}_ci_high"] = (interval(row[k], rep[k], ci["level"]) if rep
                                                           else (np.nan, np.nan))
            depth.append(row)
            if rep:
                replicates += [{**{k: row[k] for k in ("epoch", "site", "depth")}, "group": g,
                                **{k: rep[k][g] for k in means}} for g in range(len(reps))]
            for t in range(alphas.shape[1]):
                r, c = divmod(t - p0, gw) if t >= p0 else (-1, -1)
                signatures.append({"epoch": meta["epoch"], "depth": b + 1, "token": t,
                                   "name": meta["prefix_tokens"][t] if t < p0 else "patch", "row": r,
                                   "col": c, "alpha": alphas[b, t], "r2": r2[b, t],
                                   "cluster": labels[t - p0] if t >= p0 else -1})

    last = max(r["epoch"] for r in depth)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "signatures.csv", signatures)
    write_csv(out / "depth_all.csv", depth)
    write_csv(out / "depth.csv", [r for r in depth if r["epoch"] == last])  # DVC plot data: the last checkpoint
    write_csv(out / "replicates.csv", replicates)
    if coherence:
        write_csv(out / "coherence.csv", coherence)
    write_tokens_used(out, meta, used_text(meta, prefix))
    return depth, coherence, alphas.shape


if __name__ == "__main__":
    run_stage("tokens", main)
