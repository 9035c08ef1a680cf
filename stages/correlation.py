"""correlation: inter-token correlation per checkpoint and site, averaged over the probe images
-> reports/correlation/, reports/metrics/correlation.json."""
from pathlib import Path

import numpy as np

from tgo import activations
from tgo.activations import each_checkpoint, residual_sites
from tgo.geometry.correlation import intertoken_correlation
from tgo.io import atomic_dir, run_stage, write_csv, write_json
from tgo.params import load

OUT, METRICS = Path("reports/correlation"), "reports/metrics/correlation.json"
TOKEN_SETS = ("patches", "all")  # patch tokens only; all tokens including CLS


def main():
    cfg = load("correlation")
    checkpoints = activations.checkpoints()
    n = min(cfg["max_images"], checkpoints[0][1]["n_images"])

    rows = []
    for act_dir, meta in each_checkpoint(checkpoints):
        p0 = meta["num_prefix_tokens"]
        for site, depth, tokens in residual_sites(act_dir):
            x = np.asarray(tokens[:n])
            for name, sub in (("patches", x[:, p0:]), ("all", x)):
                r, a = intertoken_correlation(sub)
                rows.append({"epoch": meta["epoch"], "site": site, "depth": depth, "tokens": name,
                             "n_images": n, "mean_r": np.mean(r), "mean_r_std": np.std(r),
                             "mean_abs_r": np.mean(a), "mean_abs_r_std": np.std(a)})

    last = max(r["epoch"] for r in rows)
    at_last = [r for r in rows if r["epoch"] == last]
    blocks = [r for r in at_last if r["site"].startswith("block_") and r["tokens"] == "patches"]
    lowest = min(blocks, key=lambda r: r["mean_r"])
    summary = {"epoch": last, "n_images": n, "lowest_mean_r_site": lowest["site"], "lowest_mean_r": lowest["mean_r"]}
    for name in TOKEN_SETS:
        summary[name] = {r["site"]: {"mean_r": r["mean_r"], "mean_abs_r": r["mean_abs_r"]}
                         for r in at_last if r["tokens"] == name}
    with atomic_dir(OUT) as tmp:
        write_csv(tmp / "correlation.csv", rows)
        for name in TOKEN_SETS:  # DVC plot data: across depth at the last checkpoint
            write_csv(tmp / f"depth_{name}.csv", [r for r in at_last if r["tokens"] == name])
    write_json(METRICS, summary)
    print(f"inter-token correlation over {n} images x {len({r['epoch'] for r in rows})} checkpoints; lowest "
          f"mean r at {lowest['site']} ({lowest['mean_r']:.4f}) -> {OUT}, {METRICS}")


if __name__ == "__main__":
    run_stage("correlation", main)
