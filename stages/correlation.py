"""correlation: inter-token correlation per checkpoint and site, averaged over the probe images
-> reports/correlation/, reports/metrics/correlation.json (with --zoo <id>: the zoo model's,
tgo.runs). Token sets: the patch tokens alone, the patches with each group of prefix tokens
the model has (with_cls, with_dist, with_reg), so registers never hide in a "with CLS" number, and
the patch tokens less the probe set's mean patch token at that site (patches_mean_removed)."""
import numpy as np

from tgo import activations
from tgo.activations import each_checkpoint, each_site, prefix_groups, tokens_used, write_tokens_used
from tgo.geometry.correlation import intertoken_correlation
from tgo.geometry.stats import image_groups, interval, mean_replicates
from tgo.io import atomic_dir, run_stage, write_csv, write_json
from tgo.params import load
from tgo.runs import INIT, from_argv

MEAN_REMOVED = "patches_mean_removed"


def token_sets(prefix_tokens, n_tokens):
    """{name: token indices}: patches, then with_<group> for each prefix group."""
    patches = list(range(len(prefix_tokens), n_tokens))
    return {"patches": patches, **{f"with_{g}": idx + patches for g, idx in prefix_groups(prefix_tokens).items()}}


def main():
    run = from_argv()
    params = load("correlation", "ci")
    cfg, ci = params["correlation"], params["ci"]
    checkpoints = activations.checkpoints(run.activations)
    meta = checkpoints[0][1]
    n = min(cfg["max_images"], meta["n_images"])
    sets = token_sets(meta["prefix_tokens"], meta["num_tokens"])
    groups = image_groups(n, ci["groups"], ci["seed"])

    untrained = run.activations / INIT
    with atomic_dir(run.plots("correlation")) as tmp:
        rows = analyse(checkpoints, n, sets, groups, ci["level"], tmp)
        if untrained.is_dir():  # pretrained weights: their untrained network, for the claims
            analyse(activations.checkpoints(untrained), n, sets, groups, ci["level"], tmp / INIT)

    last = max(r["epoch"] for r in rows)
    at_last = [r for r in rows if r["epoch"] == last]
    blocks = [r for r in at_last if r["site"].startswith("block_") and r["tokens"] == "patches"]
    lowest = min(blocks, key=lambda r: r["mean_r"])
    summary = {"epoch": last, "n_images": n, "ci_level": ci["level"], "lowest_mean_r_site": lowest["site"],
               "lowest_mean_r": lowest["mean_r"]}
    keys = [f"{k}{end}" for k in ("mean_r", "mean_abs_r") for end in ("", "_ci_low", "_ci_high")]
    for name in [*sets, MEAN_REMOVED]:
        summary[name] = {r["site"]: {k: r[k] for k in keys} for r in at_last if r["tokens"] == name}
    write_json(run.metrics("correlation"), summary)
    print(f"inter-token correlation ({ci['level']:.0%} intervals, {len(set(groups))}-group jackknife) over {n} "
          f"images x {len({r['epoch'] for r in rows})} checkpoints"
          f"{' and the untrained network' if untrained.is_dir() else ''}; lowest mean r at {lowest['site']} "
          f"({lowest['mean_r']:.4f}); {used_text(meta, sets, n)} -> {run.plots('correlation')}, "
          f"{run.metrics('correlation')}")


def used_text(meta, sets, n):
    return (f"{tokens_used(meta)}; token sets {', '.join([*sets, MEAN_REMOVED])} ({MEAN_REMOVED}: the patch tokens "
            f"less the mean patch token over the {n} images and all patch positions at that site)")


def analyse(checkpoints, n, sets, groups, level, out):
    """Every checkpoint's inter-token correlation into the plot data directory `out`; returns the rows."""
    rows, replicates = [], []
    for act_dir, meta in each_checkpoint(checkpoints):
        p0 = meta["num_prefix_tokens"]
        for site, depth, tokens in each_site(act_dir):
            found = intertoken_correlation(tokens[:n], sets)
            # A component every token of every image shares makes every pair correlate: less the probe
            # set's mean patch token at this site, the correlation is that of what differs between patches.
            # The mean stays that of all the images in the replicates too (a property of the probe set, and
            # recomputing it per group would take a pass over the tokens per group).
            mean = np.mean(tokens[:n, p0:], axis=(0, 1), dtype=np.float64)
            found[MEAN_REMOVED] = intertoken_correlation(tokens[:n, p0:], remove=mean)
            for name, (r, a) in found.items():
                at = {"epoch": meta["epoch"], "site": site, "depth": depth, "tokens": name}
                reps = {"mean_r": mean_replicates(r, groups), "mean_abs_r": mean_replicates(a, groups)}
                row = {**at, "n_images": n, "mean_r": np.mean(r), "mean_r_std": np.std(r),
                       "mean_abs_r": np.mean(a), "mean_abs_r_std": np.std(a)}
                for k, v in reps.items():
                    row[f"{k}_ci_low"], row[f"{k}_ci_high"] = interval(row[k], v, level)
                rows.append(row)
                replicates += [{**at, "group": g, "mean_r": reps["mean_r"][g], "mean_abs_r": reps["mean_abs_r"][g]}
                               for g in range(len(reps["mean_r"]))]

    last = max(r["epoch"] for r in rows)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "correlation.csv", rows)
    write_csv(out / "replicates.csv", replicates)
    for name in [*sets, MEAN_REMOVED]:  # DVC plot data: across depth at the last checkpoint
        write_csv(out / f"depth_{name}.csv", [r for r in rows if r["epoch"] == last and r["tokens"] == name])
    write_tokens_used(out, meta, used_text(meta, sets, n))
    return rows


if __name__ == "__main__":
    run_stage("correlation", main)
