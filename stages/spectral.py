"""spectral: covariance spectra and the rank/entropy/flatness/anisotropy family, per checkpoint,
site and sample set -> reports/spectral/ (plot data) and reports/metrics/spectral.json
(with --zoo <id>: the zoo model's, tgo.runs)."""
import numpy as np

from tgo import activations
from tgo.activations import (each_checkpoint, each_site, image_of_rows, load_pooled, rows_of_images,
                             sample_set_names, sample_set_words, sample_sets, tokens_used, write_tokens_used)
from tgo.geometry.spectral import (jackknife_spectral_metrics, nested_spectral_metrics, row_scatter, singular_values,
                                   stage_alpha_window)
from tgo.geometry.stats import image_groups, interval, nested_sizes, still_moving, subset_order
from tgo.io import atomic_dir, run_stage, write_csv, write_json
from tgo.params import load
from tgo.runs import HEADLINE_METRICS, INIT, from_argv


def main():
    run = from_argv()
    params = load("spectral", "ci")
    cfg, ci = params["spectral"], params["ci"]
    checkpoints = activations.checkpoints(run.activations)
    meta = checkpoints[0][1]
    # A small probe set holds fewer ranks: the window comes down to fit, with a note.
    ranks = stage_alpha_window("spectral.alpha_ranks", cfg["alpha_ranks"], meta["n_images"], meta["dim"],
                               ci["groups"])
    cfg = {**cfg, "alpha_ranks": list(ranks)}
    names = sample_set_names(meta)
    untrained = run.activations / INIT
    with atomic_dir(run.plots("spectral")) as tmp:
        rows, replicates = analyse(checkpoints, cfg, ci, tmp)
        if untrained.is_dir():  # pretrained weights: their untrained network, for the claims
            analyse(activations.checkpoints(untrained), cfg, ci, tmp / INIT)

    last = max(r["epoch"] for r in rows)
    summary = {"epoch": last, "alpha_ranks": list(ranks), "ci_level": ci["level"]}
    for name in names:
        at_last = [r for r in rows if r["epoch"] == last and r["sample_set"] == name]
        final = next(r for r in at_last if r["site"] == "final_norm")
        # Sorted: a set's order varies between runs, and with it the last digits of the replicate means.
        blocks = sorted({r["site"] for r in at_last if r["site"].startswith("block_")})
        summary[name] = {"final_norm": {f"{k}{end}": final[f"{k}{end}"] for k in HEADLINE_METRICS
                                        for end in ("", "_ci_low", "_ci_high")},
                         "block_mean": {}}
        for k in HEADLINE_METRICS:  # the mean over blocks, its interval from the block-mean of each replicate
            value = float(np.mean([r[k] for r in at_last if r["site"] in blocks]))
            reps = np.mean([[r[k] for r in replicates if r["epoch"] == last and r["site"] == site
                             and r["sample_set"] == name] for site in blocks], axis=0)
            low, high = interval(value, reps, ci["level"])
            summary[name]["block_mean"].update({k: value, f"{k}_ci_low": float(low), f"{k}_ci_high": float(high)})
    write_json(run.metrics("spectral"), summary)
    n_checkpoints = len({r["epoch"] for r in rows})
    print(f"spectral metrics for {n_checkpoints} checkpoints x {len(rows) // n_checkpoints // len(names)} sites x "
          f"sample sets (alpha window {ranks}){' and the untrained network' if untrained.is_dir() else ''}, "
          f"{ci['level']:.0%} intervals from a {min(ci['groups'], meta['n_images'])}-group jackknife over "
          f"{meta['n_images']} images; {used_text(meta)} -> "
          f"{run.plots('spectral')}, {run.metrics('spectral')}")


def analyse(checkpoints, cfg, ci, out):
    """Every checkpoint's spectra into the plot data directory `out`; returns (rows, replicates)."""
    ranks = tuple(cfg["alpha_ranks"])
    meta = checkpoints[0][1]
    n_images = meta["n_images"]
    groups = image_groups(n_images, ci["groups"], ci["seed"])
    order, sizes = subset_order(n_images, ci["seed"]), nested_sizes(n_images)
    rows, spectra, replicates, sample_size = [], [], [], []
    for act_dir, meta in each_checkpoint(checkpoints):
        pooled = load_pooled(act_dir)
        for site, depth, tokens in each_site(act_dir):
            sets = sample_sets(tokens, meta, pooled[depth] if pooled is not None else None)
            for name, X in sets.items():
                at = {"epoch": meta["epoch"], "site": site, "depth": depth, "sample_set": name}
                # Rows of one image (its patch tokens) are left out together.
                labels = groups[image_of_rows(X, n_images)]
                # At the last checkpoint, nested subsets of the images too, from the same pass over X.
                nested = [rows_of_images(n_images, len(X), order[:size]) for size in sizes] \
                    if act_dir == checkpoints[-1][0] else []
                scatter = row_scatter(X, labels, nested) if len(X) >= X.shape[1] else None
                m, reps = jackknife_spectral_metrics(X, labels, ranks, cfg["cosine_max_samples"], scatter)
                eigs = m.pop("eigenvalues")
                bounds = {}
                for k in HEADLINE_METRICS:
                    bounds[f"{k}_ci_low"], bounds[f"{k}_ci_high"] = interval(m[k], reps[k], ci["level"])
                rows.append({**at, "n_samples": len(X), **m, **bounds})
                replicates += [{**at, "group": g, **{k: reps[k][g] for k in HEADLINE_METRICS}}
                               for g in range(len(reps["alpha"]))]
                sample_size += [{**at, "n_images": size, **{k: v[k] for k in HEADLINE_METRICS}} for size, v in zip(
                    sizes, nested_spectral_metrics(X, nested, ranks, cfg["cosine_max_samples"], scatter))]
                sv = singular_values(eigs, len(X))
                spectra += [{"epoch": meta["epoch"], "site": site, "sample_set": name, "rank": k + 1,
                             "eigenvalue": e, "singular_value": s}
                            for k, (e, s) in enumerate(zip(eigs, sv))]

    last = max(r["epoch"] for r in rows)
    final = [r for r in rows if r["site"] == "final_norm"]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "metrics.csv", rows)
    write_csv(out / "eigenspectra.csv", spectra)
    write_csv(out / "replicates.csv", replicates)
    write_csv(out / "sample_size.csv", sample_size)
    moving = still_moving_rows(rows, sample_size, sizes, last)
    if moving:
        write_csv(out / "still_moving.csv", moving)
    write_tokens_used(out, meta, used_text(meta))
    for name in sample_set_names(meta):
        # DVC plot data: the profile across depth at the last checkpoint, the final norm over training.
        write_csv(out / f"depth_{name}.csv", [r for r in rows if r["epoch"] == last and r["sample_set"] == name])
        write_csv(out / f"training_{name}.csv", [r for r in final if r["sample_set"] == name])
    return rows, replicates


def still_moving_rows(rows, sample_size, sizes, last):
    """The headline metrics still moving at N images (tgo.geometry.stats.still_moving) per sample set
    and site, at the last checkpoint: value(N) and value(N/2) from the nested subsets, the interval
    from the full set; in the order the report lists them (metric, then site by depth)."""
    if len(sizes) < 2:
        return []
    at_n = {(r["sample_set"], r["site"]): r for r in rows if r["epoch"] == last}
    value = {(r["sample_set"], r["site"], r["n_images"]): r for r in sample_size}
    out = []
    for name in dict.fromkeys(r["sample_set"] for r in sample_size):
        sites = [s for _, s in sorted({(r["depth"], r["site"]) for r in sample_size if r["sample_set"] == name})
                 if (name, s) in at_n]
        for k in HEADLINE_METRICS:
            for site in sites:
                full, v, v_half = at_n[name, site], value[name, site, sizes[-1]][k], value[name, site, sizes[-2]][k]
                if still_moving(v, v_half, full[f"{k}_ci_low"], full[f"{k}_ci_high"]):
                    out.append({"epoch": last, "sample_set": name, "site": site, "depth": full["depth"], "metric": k,
                                "n_images": sizes[-1], "value": v, "value_half": v_half,
                                "ci_low": full[f"{k}_ci_low"], "ci_high": full[f"{k}_ci_high"]})
    return out


def used_text(meta):
    return f"{tokens_used(meta)}; sample sets {sample_set_text(meta)}"


def sample_set_text(meta):
    """Which tokens each sample set holds, in words."""
    return "; ".join(f"{name}: {what}" for name, (_, what) in sample_set_words(meta).items())


if __name__ == "__main__":
    run_stage("spectral", main)
