"""mi: per checkpoint, block and sublayer (attention, MLP): mutual information between neurons vs
spatial distance, excess kurtosis, conditional ("bowtie") histograms, over the patch tokens only
-> reports/mi/, reports/metrics/mi.json (with --zoo <id>: the zoo model's, tgo.runs)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tgo import activations
from tgo.activations import each_checkpoint, site_name, tokens_used, write_tokens_used
from tgo.geometry.information import conditional_histogram, excess_kurtosis, log_mi_slope, mi_vs_distance
from tgo.io import TGOError, atomic_dir, run_stage, write_csv, write_json
from tgo.params import load
from tgo.runs import from_argv

SUBLAYERS = ("attn", "mlp")


def main():
    run = from_argv()
    cfg = load("mi")
    checkpoints = activations.checkpoints(run.activations)
    meta = checkpoints[0][1]
    rows_, cols_ = meta["grid"]
    if cfg["n_channels"] > meta["dim"]:
        raise TGOError(f"mi.n_channels={cfg['n_channels']}: choose 1..{meta['dim']} (the width)")
    reference = tuple(cfg["reference"]) if cfg["reference"] else (rows_ // 2, cols_ // 2)
    if not (reference[0] < rows_ and reference[1] < cols_):
        raise TGOError(f"mi.reference={list(reference)} is outside the {rows_}x{cols_} patch grid")
    n = min(cfg["max_images"], meta["n_images"])
    if cfg["k"] >= n:
        raise TGOError(f"mi.k={cfg['k']} with {n} images (mi.max_images, at most extract.probe_size): need "
                       f"1 <= k < {n}; lower mi.k (3 is usual) or use more images")
    channels = np.sort(np.random.default_rng(cfg["seed"]).choice(meta["dim"], cfg["n_channels"], replace=False))
    ref_index = reference[0] * cols_ + reference[1]

    def block(act_dir, meta, sub, b):
        """One block's MI curve rows, kurtosis row and (at the last checkpoint) bowtie rows."""
        # The block read into memory (float16 N x patches x C) and its mapping dropped, so the
        # mapped pages of all blocks never add up in the resident set.
        x = np.array(activations.load(act_dir, sub)[b, :n, meta["num_prefix_tokens"]:])
        res = mi_vs_distance(x, (rows_, cols_), channels, reference, k=cfg["k"],
                             estimator=cfg["estimator"], n_shuffles=cfg["n_shuffles"], seed=cfg["seed"])
        at = {"epoch": meta["epoch"], "sublayer": sub, "site": site_name(b + 1, meta["n_blocks"]), "depth": b + 1}
        curve = [{**at, "distance": d, "mi": m, "mi_std": s} for d, m, s in zip(res["distances"], res["mi"],
                                                                                 res["mi_std"])]
        k = excess_kurtosis(x.reshape(len(x), -1), axis=0)
        q = np.nanpercentile(k, [10, 50, 90])
        kurt = {**at, "kurtosis_mean": np.nanmean(k), "kurtosis_p10": q[0], "kurtosis_median": q[1],
                "kurtosis_p90": q[2]}
        bow = (_bowtie_rows(x, (rows_, cols_), ref_index, channels[0], cfg["bowtie_bins"], at)
               if act_dir == checkpoints[-1][0] else [])
        return curve, kurt, bow

    curves, kurtosis, bowtie = [], [], []
    # Two blocks at a time: one block's reading, shuffles and kurtosis (a single thread) run while
    # the other's KSG kernel keeps every core busy. Each block's numbers are computed alone, in order.
    with ThreadPoolExecutor(2) as pool:
        for act_dir, meta in each_checkpoint(checkpoints):
            work = [(sub, b) for sub in SUBLAYERS for b in range(meta["n_blocks"])]
            for curve, kurt, bow in pool.map(lambda w: block(act_dir, meta, *w), work):
                curves += curve
                kurtosis.append(kurt)
                bowtie += bow

    last = max(r["epoch"] for r in curves)
    summary = {"epoch": last, "reference": list(reference), "n_channels": cfg["n_channels"],
               "estimator": cfg["estimator"], "n_images": n}
    depth_rows = {sub: [] for sub in SUBLAYERS}
    for sub in SUBLAYERS:
        summary[sub] = {}
        for site, depth in sorted({(r["site"], r["depth"]) for r in curves}, key=lambda s: s[1]):
            c = sorted((r["distance"], r["mi"]) for r in curves
                       if r["epoch"] == last and r["sublayer"] == sub and r["depth"] == depth)
            d, m = np.array([x[0] for x in c]), np.array([x[1] for x in c])
            summary[sub][site] = {"mi_at_distance_1": float(m[0]), "mi_at_max_distance": float(m[-1]),
                                  "log_mi_slope": log_mi_slope(d, m)}
            depth_rows[sub].append({"site": site, "depth": depth, **summary[sub][site]})
    used = f"{tokens_used(meta)}; neurons of the patch tokens only (prefix tokens excluded)"
    with atomic_dir(run.plots("mi")) as tmp:
        write_csv(tmp / "mi_distance.csv", curves)
        write_csv(tmp / "kurtosis.csv", kurtosis)
        write_csv(tmp / "bowtie.csv", bowtie)
        for sub in SUBLAYERS:  # DVC plot data: MI at distance 1 across depth, last checkpoint
            write_csv(tmp / f"depth_{sub}.csv", depth_rows[sub])
        write_tokens_used(tmp, meta, used)
    write_json(run.metrics("mi"), summary)
    print(f"MI vs distance ({cfg['estimator']}, {cfg['n_channels']} channels, reference patch "
          f"{reference}, {n} images) for {len(checkpoints)} checkpoints; {used} -> {run.plots('mi')}, "
          f"{run.metrics('mi')}")


def _bowtie_rows(x, grid, ref_index, channel, bins, at):
    """p(y|x) for the reference neuron and the same channel at a near (distance 1) and a far patch."""
    rows_, cols_ = grid
    r0, c0 = divmod(ref_index, cols_)
    near = ref_index + 1 if c0 + 1 < cols_ else ref_index - 1
    far = max(range(rows_ * cols_), key=lambda p: np.hypot(p // cols_ - r0, p % cols_ - c0))
    out = []
    for pair, p in (("near", near), ("far", far)):
        edges, h = conditional_histogram(x[:, ref_index, channel], x[:, p, channel], bins=bins)
        centres = (edges[:-1] + edges[1:]) / 2
        out += [{**at, "pair": pair, "x": centres[i], "y": centres[j], "p": h[i, j]}
                for i in range(len(centres)) for j in range(len(centres))]
    return out


if __name__ == "__main__":
    run_stage("mi", main)
