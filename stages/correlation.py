"""correlation: inter-token correlation per checkpoint and site, averaged over the probe images
-> reports/correlation/, reports/metrics/correlation.json (with --zoo <id>: the zoo model's,
tgo.runs). Token sets: the patch tokens alone, and the patches with each group of prefix tokens
the model has (with_cls, with_dist, with_reg), so registers never hide in a "with CLS" number."""
import numpy as np

from tgo import activations
from tgo.activations import each_checkpoint, prefix_groups, residual_sites, tokens_used, write_tokens_used
from tgo.geometry.correlation import intertoken_correlation
from tgo.io import atomic_dir, run_stage, write_csv, write_json
from tgo.params import load
from tgo.runs import from_argv


def token_sets(prefix_tokens, n_tokens):
    """{name: token indices}: patches, then with_<group> for each prefix group."""
    patches = list(range(len(prefix_tokens), n_tokens))
    return {"patches": patches, **{f"with_{g}": idx + patches for g, idx in prefix_groups(prefix_tokens).items()}}


def main():
    run = from_argv()
    cfg = load("correlation")
    checkpoints = activations.checkpoints(run.activations)
    meta = checkpoints[0][1]
    n = min(cfg["max_images"], meta["n_images"])
    sets = token_sets(meta["prefix_tokens"], meta["num_tokens"])

    rows = []
    for act_dir, meta in each_checkpoint(checkpoints):
        for site, depth, tokens in residual_sites(act_dir):
            x = np.asarray(tokens[:n])
            for name, idx in sets.items():
                r, a = intertoken_correlation(x[:, idx])
                rows.append({"epoch": meta["epoch"], "site": site, "depth": depth, "tokens": name,
                             "n_images": n, "mean_r": np.mean(r), "mean_r_std": np.std(r),
                             "mean_abs_r": np.mean(a), "mean_abs_r_std": np.std(a)})

    last = max(r["epoch"] for r in rows)
    at_last = [r for r in rows if r["epoch"] == last]
    blocks = [r for r in at_last if r["site"].startswith("block_") and r["tokens"] == "patches"]
    lowest = min(blocks, key=lambda r: r["mean_r"])
    summary = {"epoch": last, "n_images": n, "lowest_mean_r_site": lowest["site"], "lowest_mean_r": lowest["mean_r"]}
    for name in sets:
        summary[name] = {r["site"]: {"mean_r": r["mean_r"], "mean_abs_r": r["mean_abs_r"]}
                         for r in at_last if r["tokens"] == name}
    used = f"{tokens_used(meta)}; token sets {', '.join(sets)}"
    with atomic_dir(run.plots("correlation")) as tmp:
        write_csv(tmp / "correlation.csv", rows)
        for name in sets:  # DVC plot data: across depth at the last checkpoint
            write_csv(tmp / f"depth_{name}.csv", [r for r in at_last if r["tokens"] == name])
        write_tokens_used(tmp, meta, used)
    write_json(run.metrics("correlation"), summary)
    print(f"inter-token correlation over {n} images x {len({r['epoch'] for r in rows})} checkpoints; lowest "
          f"mean r at {lowest['site']} ({lowest['mean_r']:.4f}); {used} -> {run.plots('correlation')}, "
          f"{run.metrics('correlation')}")


if __name__ == "__main__":
    run_stage("correlation", main)
