"""tokens: per checkpoint, the alpha signature of every token across blocks, clusters of patch
tokens by signature and their spatial coherence -> reports/tokens/, reports/metrics/tokens.json."""
from pathlib import Path

import numpy as np

from tgo import activations
from tgo.activations import each_checkpoint, site_name
from tgo.geometry.spectral import alpha_window_error
from tgo.geometry.tokens import alpha_signatures, cluster_signatures, spatial_coherence
from tgo.io import TGOError, atomic_dir, run_stage, write_csv, write_json
from tgo.params import load

OUT, METRICS = Path("reports/tokens"), "reports/metrics/tokens.json"


def main():
    cfg = load("tokens")
    ranks = tuple(cfg["alpha_ranks"])
    checkpoints = activations.checkpoints()
    meta = checkpoints[0][1]
    n_patches = meta["grid"][0] * meta["grid"][1]
    if cfg["n_clusters"] > n_patches:
        raise TGOError(f"tokens.n_clusters={cfg['n_clusters']}: choose 2..{n_patches} (the patch count)")
    missing = alpha_window_error(ranks, meta["n_images"], meta["dim"])

    signatures, depth, coherence = [], [], []
    for act_dir, meta in each_checkpoint(checkpoints):
        p0, (gh, gw), n_blocks = meta["num_prefix_tokens"], meta["grid"], meta["n_blocks"]
        alphas, r2 = alpha_signatures(activations.load(act_dir, "residual"), ranks)
        patch_sig = alphas[:, p0:].T  # (patches, blocks)
        labels = np.full(len(patch_sig), -1)
        if np.all(np.isfinite(patch_sig)):
            labels = cluster_signatures(patch_sig, cfg["n_clusters"], cfg["cluster_method"], cfg["seed"])
            coh = spatial_coherence(labels, (gh, gw), cfg["n_permutations"], cfg["seed"])
            coherence.append({"epoch": meta["epoch"], **coh})
        for b in range(n_blocks):
            site = site_name(b + 1, n_blocks)
            patches = alphas[b, p0:]
            depth.append({"epoch": meta["epoch"], "site": site, "depth": b + 1, "cls_alpha": alphas[b, 0],
                          "patch_alpha_mean": np.mean(patches), "patch_alpha_std": np.std(patches),
                          "patch_r2_mean": np.mean(r2[b, p0:])})
            for t in range(alphas.shape[1]):
                row, col = divmod(t - p0, gw) if t >= p0 else (-1, -1)
                signatures.append({"epoch": meta["epoch"], "depth": b + 1, "token": t, "row": row,
                                   "col": col, "alpha": alphas[b, t], "r2": r2[b, t],
                                   "cluster": labels[t - p0] if t >= p0 else -1})

    last = max(r["epoch"] for r in depth)
    at_last = [r for r in depth if r["epoch"] == last]
    summary = {"epoch": last, "alpha_ranks": list(ranks),
               "patch_alpha_mean": {r["site"]: r["patch_alpha_mean"] for r in at_last},
               "cls_alpha": {r["site"]: r["cls_alpha"] for r in at_last}}
    if missing:
        summary["alpha_missing"] = missing
    last_coh = [c for c in coherence if c["epoch"] == last]
    if last_coh:
        summary["coherence"] = {k: last_coh[0][k] for k in ("neighbour_share", "null_mean", "null_std", "z")}
    with atomic_dir(OUT) as tmp:
        write_csv(tmp / "signatures.csv", signatures)
        write_csv(tmp / "depth_all.csv", depth)
        write_csv(tmp / "depth.csv", at_last)  # DVC plot data: alpha across depth, last checkpoint
        if coherence:
            write_csv(tmp / "coherence.csv", coherence)
    write_json(METRICS, summary)
    print(f"alpha signatures of {alphas.shape[1]} tokens x {alphas.shape[0]} blocks for "
          f"{len({r['epoch'] for r in depth})} checkpoints; {cfg['n_clusters']} {cfg['cluster_method']} clusters"
          + (f"; alpha missing: {missing}" if missing else "") + f" -> {OUT}, {METRICS}")


if __name__ == "__main__":
    run_stage("tokens", main)
