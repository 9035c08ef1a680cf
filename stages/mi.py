"""mi: per checkpoint, block and sublayer (attention, MLP): mutual information between neurons vs
spatial distance and its decay rate, excess kurtosis, conditional ("bowtie") histograms, over the patch tokens only;
at the first and the last checkpoint also their half-sample replicates and intervals
-> reports/mi/, reports/metrics/mi.json (with --zoo <id>: the zoo model's, tgo.runs)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tgo import activations
from tgo.activations import each_checkpoint, site_name, tokens_used, write_tokens_used
from tgo.geometry.information import conditional_histogram, excess_kurtosis, mi_decay_rate, mi_vs_distance
from tgo.geometry.stats import half_sample_interval, half_samples
from tgo.io import TGOError, atomic_dir, progress, run_stage, write_csv, write_json
from tgo.params import load
from tgo.runs import INIT, from_argv

SUBLAYERS = ("attn", "mlp")


def main():
    run = from_argv()
    params = load("mi", "ci")
    cfg, level = params["mi"], params["ci"]["level"]
    checkpoints = activations.checkpoints(run.activations)
    meta = checkpoints[0][1]
    rows_, cols_ = meta["grid"]
    if cfg["n_channels"] > meta["dim"]:
        raise TGOError(f"mi.n_channels={cfg['n_channels']}: choose 1..{meta['dim']} (the width)")
    if cfg["reference"] and not (cfg["reference"][0] < rows_ and cfg["reference"][1] < cols_):
        raise TGOError(f"mi.reference={cfg['reference']} is outside the {rows_}x{cols_} patch grid")
    n = min(cfg["max_images"], meta["n_images"])
    if cfg["k"] >= n // 2:
        raise TGOError(f"mi.k={cfg['k']} with {n} images (mi.max_images, at most extract.probe_size), whose "
                       f"half-samples hold {n // 2}: need 1 <= k < {n // 2}; lower mi.k (3 is usual) or use more "
                       "images")
    channels = np.sort(np.random.default_rng(cfg["seed"]).choice(meta["dim"], cfg["n_channels"], replace=False))
    # The same halves for every block, sublayer and checkpoint, so differences between them are paired.
    halves = half_samples(n, cfg["half_samples"], params["ci"]["seed"])
    untrained = run.activations / INIT
    with atomic_dir(run.plots("mi")) as tmp:
        summary, res = analyse(checkpoints, cfg, level, n, channels, halves, tmp)
        if untrained.is_dir():  # pretrained weights: their untrained network, for the claims
            analyse(activations.checkpoints(untrained), cfg, level, n, channels, halves, tmp / INIT)
    write_json(run.metrics("mi"), summary)
    gone = "; ".join(f"distance {d['distance']} dropped ({d['reason']}: {d['patches_per_reference']:g})"
                     for d in res["dropped"])
    print(f"MI vs distance ({cfg['estimator']}, {cfg['n_shuffles']} shuffles, {cfg['n_channels']} channels, "
          f"reference patches {', '.join(map(str, res['references']))}, distances {summary['distances']}"
          f"{'; ' + gone if gone else ''}; {n} images, {cfg['half_samples']} half-samples at epochs "
          f"{summary['replicate_epochs']}) for {len(checkpoints)} checkpoints"
          f"{' and the untrained network' if untrained.is_dir() else ''}; {used_text(meta)} -> {run.plots('mi')}, "
          f"{run.metrics('mi')}")


def used_text(meta):
    return f"{tokens_used(meta)}; neurons of the patch tokens only (prefix tokens excluded)"


def analyse(checkpoints, cfg, level, n, channels, halves, out):
    """Every checkpoint's MI curves, kurtosis and (first and last checkpoint) their half-sample
    replicates into the plot data directory `out`; returns (the summary of the last checkpoint, the
    last block's mi_vs_distance result)."""
    rows_, cols_ = checkpoints[0][1]["grid"]
    with_replicates = {checkpoints[0][0], checkpoints[-1][0]}

    def block(act_dir, meta, sub, b):
        """One block's MI curve, kurtosis, replicate and (at the last checkpoint) bowtie rows."""
        # The block read into memory (float16 N x patches x C) and its mapping dropped, so the
        # mapped pages of all blocks never add up in the resident set.
        x = np.array(activations.load(act_dir, sub)[b, :n, meta["num_prefix_tokens"]:])
        reps = act_dir in with_replicates
        res = mi_vs_distance(x, (rows_, cols_), channels, cfg["reference"], k=cfg["k"], estimator=cfg["estimator"],
                             n_shuffles=cfg["n_shuffles"], seed=cfg["seed"], half_samples=halves if reps else None)
        at = {"epoch": meta["epoch"], "sublayer": sub, "site": site_name(b + 1, meta["n_blocks"]), "depth": b + 1}
        nan = np.full(res["mi"].shape, np.nan)
        low, high = half_sample_interval(res["mi"], res["mi_halves"].T, level) if reps else (nan, nan)
        curve = [{**at, "distance": d, "mi": m, "mi_std": s, "mi_ci_low": lo, "mi_ci_high": hi}
                 for d, m, s, lo, hi in zip(res["distances"], res["mi"], res["mi_std"], low, high)]
        k = excess_kurtosis(x.reshape(len(x), -1), axis=0)
        q = np.nanpercentile(k, [10, 50, 90])
        kurt = {**at, "kurtosis_mean": np.nanmean(k), "kurtosis_p10": q[0], "kurtosis_median": q[1],
                "kurtosis_p90": q[2], "kurtosis_mean_ci_low": np.nan, "kurtosis_mean_ci_high": np.nan}
        # The MI decay rate is computed here once; the claims and the figures read it (tgo.runs.ROWS).
        decay = {**at, "mi_decay_rate": mi_decay_rate(res["distances"], res["mi"])}
        mi_reps, kurt_reps, decay_reps = [], [], []
        if reps:
            kurt_halves = [np.nanmean(excess_kurtosis(x[h].reshape(len(h), -1), axis=0)) for h in halves]
            kurt["kurtosis_mean_ci_low"], kurt["kurtosis_mean_ci_high"] = half_sample_interval(
                kurt["kurtosis_mean"], kurt_halves, level)
            kurt_reps = [{**at, "half": h, "kurtosis_mean": v} for h, v in enumerate(kurt_halves)]
            mi_reps = [{**at, "distance": d, "half": h, "mi": m}
                       for h, curve_h in enumerate(res["mi_halves"]) for d, m in zip(res["distances"], curve_h)]
            decay_reps = [{**at, "half": h, "mi_decay_rate": v}
                          for h, v in enumerate(mi_decay_rate(res["distances"], res["mi_halves"]))]
        r0, c0 = res["references"][0]
        bow = (_bowtie_rows(x, (rows_, cols_), r0 * cols_ + c0, channels[0], cfg["bowtie_bins"], at)
               if act_dir == checkpoints[-1][0] else [])
        return res, curve, kurt, bow, mi_reps, kurt_reps, decay, decay_reps

    curves, kurtosis, bowtie, mi_replicates, kurtosis_replicates, last_results = [], [], [], [], [], {}
    decays, decay_replicates = [], []
    # Two blocks at a time: one block's reading, shuffles and kurtosis (a single thread) run while
    # the other's KSG kernel keeps every core busy. Each block's numbers are computed alone, in order.
    with ThreadPoolExecutor(2) as pool:
        for act_dir, meta in each_checkpoint(checkpoints):
            work = [(sub, b) for sub in SUBLAYERS for b in range(meta["n_blocks"])]
            done = progress(pool.map(lambda w: block(act_dir, meta, *w), work), total=len(work),
                            desc="sublayers", unit="sublayer", leave=False)
            # The bar first: zip exhausts it, which closes it.
            for (res, curve, kurt, bow, mi_reps, kurt_reps, decay, decay_reps), (sub, b) in zip(done, work):
                curves += curve
                decays.append(decay)
                decay_replicates += decay_reps
                kurtosis.append(kurt)
                bowtie += bow
                mi_replicates += mi_reps
                kurtosis_replicates += kurt_reps
                last_results[sub, b] = (kurt["site"], res)

    res = last_results[SUBLAYERS[0], 0][1]
    distances, dropped = [int(d) for d in res["distances"]], res["dropped"]
    summary = {"epoch": meta["epoch"], "references": [list(r) for r in res["references"]],
               "distances": distances, "dropped_distances": dropped, "n_channels": cfg["n_channels"],
               "estimator": cfg["estimator"], "n_shuffles": cfg["n_shuffles"], "n_images": n,
               "half_samples": cfg["half_samples"], "replicate_epochs": sorted({r["epoch"] for r in mi_replicates}),
               "ci_level": level}
    depth_rows = {sub: [] for sub in SUBLAYERS}
    for (sub, b), (site, block_res) in last_results.items():
        summary.setdefault(sub, {})[site] = _site_summary(block_res, level)
        depth_rows[sub].append({"site": site, "depth": b + 1, **summary[sub][site]})
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "mi_distance.csv", curves)
    write_csv(out / "kurtosis.csv", kurtosis)
    write_csv(out / "bowtie.csv", bowtie)
    write_csv(out / "replicates.csv", mi_replicates)
    write_csv(out / "kurtosis_replicates.csv", kurtosis_replicates)
    write_csv(out / "decay.csv", decays)
    write_csv(out / "decay_replicates.csv", decay_replicates)
    for sub in SUBLAYERS:  # DVC plot data: MI at distance 1 across depth, last checkpoint
        write_csv(out / f"depth_{sub}.csv", depth_rows[sub])
    write_tokens_used(out, meta, used_text(meta))
    return summary, res


def _site_summary(res, level):
    """A block's MI at distance 1 (nan if that bin is dropped) and at the largest distance, and the
    decay rate, with their half-sample intervals where the replicates exist."""
    d = res["distances"]
    at1 = np.flatnonzero(d == 1)
    out = {"mi_at_distance_1": float(res["mi"][at1[0]]) if at1.size else float("nan"),
           "mi_at_max_distance": float(res["mi"][-1]), "mi_decay_rate": mi_decay_rate(d, res["mi"])}
    if "mi_halves" in res:
        reps = {"mi_at_distance_1": res["mi_halves"][:, at1[0]] if at1.size else np.full(len(res["mi_halves"]), np.nan),
                "mi_decay_rate": mi_decay_rate(d, res["mi_halves"])}
        for key, r in reps.items():
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = half_sample_interval(out[key], r, level)
    return out


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
