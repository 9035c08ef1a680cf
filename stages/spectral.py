"""spectral: covariance spectra and the rank/entropy/flatness/anisotropy family, per checkpoint,
site and sample set -> reports/spectral/ (plot data) and reports/metrics/spectral.json
(with --zoo <id>: the zoo model's, tgo.runs)."""
import numpy as np

from tgo import activations
from tgo.activations import (each_checkpoint, load_pooled, residual_sites, sample_set_names, sample_sets,
                             tokens_used, write_tokens_used)
from tgo.geometry.spectral import alpha_window_error, singular_values, spectral_metrics
from tgo.io import TGOError, atomic_dir, run_stage, write_csv, write_json
from tgo.params import load
from tgo.runs import from_argv

SUMMARY = ("effective_rank", "rankme", "stable_rank", "participation_ratio", "spectral_entropy",
           "spectral_flatness", "anisotropy", "mean_cosine_similarity", "alpha")


def main():
    run = from_argv()
    cfg = load("spectral")
    ranks = tuple(cfg["alpha_ranks"])
    checkpoints = activations.checkpoints(run.activations)
    meta = checkpoints[0][1]
    reason = alpha_window_error(ranks, meta["n_images"], meta["dim"])
    if reason:
        raise TGOError(f"spectral.alpha_ranks={list(ranks)}: {reason}; choose a window inside it "
                       f"or raise extract.probe_size")
    names = sample_set_names(meta)

    rows, spectra = [], []
    for act_dir, meta in each_checkpoint(checkpoints):
        pooled = load_pooled(act_dir)
        for site, depth, tokens in residual_sites(act_dir):
            sets = sample_sets(tokens, meta, pooled[depth] if pooled is not None else None)
            for name, X in sets.items():
                m = spectral_metrics(X, ranks, cfg["cosine_max_samples"])
                eigs = m.pop("eigenvalues")
                rows.append({"epoch": meta["epoch"], "site": site, "depth": depth, "sample_set": name,
                             "n_samples": len(X), **m})
                sv = singular_values(eigs, len(X))
                spectra += [{"epoch": meta["epoch"], "site": site, "sample_set": name, "rank": k + 1,
                             "eigenvalue": e, "singular_value": s}
                            for k, (e, s) in enumerate(zip(eigs, sv))]

    last = max(r["epoch"] for r in rows)
    final = [r for r in rows if r["site"] == "final_norm"]
    with atomic_dir(run.plots("spectral")) as tmp:
        write_csv(tmp / "metrics.csv", rows)
        write_csv(tmp / "eigenspectra.csv", spectra)
        used = f"{tokens_used(meta)}; sample sets {sample_set_text(meta)}"
        write_tokens_used(tmp, meta, used)
        for name in names:
            # DVC plot data: the profile across depth at the last checkpoint, the final norm over training.
            write_csv(tmp / f"depth_{name}.csv", [r for r in rows if r["epoch"] == last and r["sample_set"] == name])
            write_csv(tmp / f"training_{name}.csv", [r for r in final if r["sample_set"] == name])

    summary = {"epoch": last}
    for name in names:
        at_last = [r for r in rows if r["epoch"] == last and r["sample_set"] == name]
        blocks = [r for r in at_last if r["site"].startswith("block_")]
        summary[name] = {
            "final_norm": {k: next(r[k] for r in at_last if r["site"] == "final_norm") for k in SUMMARY},
            "block_mean": {k: float(np.mean([r[k] for r in blocks])) for k in SUMMARY},
        }
    write_json(run.metrics("spectral"), summary)
    n_checkpoints = len({r["epoch"] for r in rows})
    print(f"spectral metrics for {n_checkpoints} checkpoints x {len(rows) // n_checkpoints // len(names)} sites x "
          f"sample sets (alpha window {ranks}); {used} -> "
          f"{run.plots('spectral')}, {run.metrics('spectral')}")


def sample_set_text(meta):
    """Which tokens each sample set holds, in words."""
    text = {"cls": "cls: the CLS token", "pooled": f"pooled: the head's input ({meta['head_input']})",
            "patches": "patches: every patch token of every image", "patch_mean": "patch_mean: patch tokens "
            "averaged per image"}
    return "; ".join(text[name] for name in sample_set_names(meta))


if __name__ == "__main__":
    run_stage("spectral", main)
