"""qk: per checkpoint and block, the spectra of W_Q W_K^T (per head and heads together) and the
angle between patch vectors vs their attention -> reports/qk/, reports/metrics/qk.json (with
--zoo <id>: the zoo model's, tgo.runs). A model whose attention is not a bilinear softmax of its
normed input (RoPE, qk-norm) gets one line saying so, and no QK numbers."""
import numpy as np

from tgo import activations
from tgo.activations import each_checkpoint, site_name, tokens_used, write_tokens_used
from tgo.checkpoints import load_checkpoint, read_config
from tgo.geometry.stats import image_groups, interval
from tgo.geometry.qk import (angle_attention_stats, decompose, head_mean_attention, head_projections, heads_together,
                             jackknife_angle_attention_stats, layer_norm)
from tgo.io import TGOError, atomic_dir, run_stage, write_csv, write_json
from tgo.params import load
from tgo.runs import from_argv

SUMMARY = ("sym_fraction_positive", "sym_mass_positive", "asym_sym_norm_ratio", "sv1_energy_share",
           "top10pct_sv_energy_share")


def main():
    run = from_argv()
    params = load("qk", "ci")
    cfg, ci = params["qk"], params["ci"]
    name = read_config(run.checkpoints)["model_kwargs"]["name"]
    checkpoints = activations.checkpoints(run.activations)
    meta = checkpoints[0][1]
    if "attention" not in meta:  # extract records what the model's attention is
        raise TGOError(f"{checkpoints[0][0]}/meta.json: no attention layout (written by an older extract); extract "
                       "again with dvc repro -f -s extract")
    reason = meta["attention"]["not_bilinear"]
    if reason:
        with atomic_dir(run.plots("qk")) as tmp:
            write_tokens_used(tmp, meta, f"none: QK analysis skipped, {reason}")
        write_json(run.metrics("qk"), {"epoch": meta["epoch"], "skipped": reason})
        print(f"qk: skipped, the attention of {name} is not a bilinear softmax(x W_Q W_K^T x^T): {reason} -> "
              f"{run.metrics('qk')}")
        return
    num_heads, eps = meta["attention"]["num_heads"], meta["attention"]["norm_eps"]

    n = min(cfg["max_images"], meta["n_images"])
    groups = image_groups(n, ci["groups"], ci["seed"])
    heads, spectra, angles, binned, replicates = [], [], [], [], []
    for act_dir, meta in each_checkpoint(checkpoints):
        epoch, p0, n_blocks = meta["epoch"], meta["num_prefix_tokens"], meta["n_blocks"]
        w = {k: v.astype(np.float64) for k, v in load_checkpoint(run.checkpoints, epoch).items()}
        embed, residual = activations.load(act_dir, "embed"), activations.load(act_dir, "residual")
        for b in range(n_blocks):
            pre = f"blocks.{b}."
            at = {"epoch": epoch, "site": site_name(b + 1, n_blocks), "depth": b + 1}
            w_q, w_k = head_projections(w[pre + "attn.qkv.weight"], num_heads)
            for h in range(num_heads):
                d = decompose(w_q[h], w_k[h])
                heads.append({**at, "head": h, **{k: d[k] for k in SUMMARY}})
            together = heads_together(w_q, w_k)
            heads.append({**at, "head": "all", **{k: together[k] for k in SUMMARY}})
            for kind in ("sym_eigenvalues", "asym_magnitudes", "singular_values"):
                spectra += [{**at, "kind": kind, "index": i + 1, "value": v} for i, v in enumerate(together[kind])]

            # Angles and attention among the tokens that enter attention: norm1 of the block input.
            x = embed[:n] if b == 0 else residual[b - 1, :n]
            hidden = layer_norm(np.asarray(x, dtype=np.float64), w[pre + "norm1.weight"], w[pre + "norm1.bias"], eps)
            attn = head_mean_attention(hidden, w[pre + "attn.qkv.weight"], w.get(pre + "attn.qkv.bias"), num_heads)
            # Intervals at the last checkpoint (the one the verdicts judge): the images left out by group.
            if act_dir == checkpoints[-1][0]:
                st, reps = jackknife_angle_attention_stats(hidden, attn, groups, p0, cfg["angle_bins"])
            else:
                st, reps = angle_attention_stats(hidden, attn, p0, cfg["angle_bins"]), []
            row = {**at, "spearman": st["spearman"], "share_obtuse": st["share_obtuse"], "n_pairs": st["n_pairs"]}
            for k in ("spearman", "share_obtuse"):
                row[f"{k}_ci_low"], row[f"{k}_ci_high"] = (interval(st[k], [x[k] for x in reps], ci["level"])
                                                           if reps else (np.nan, np.nan))
            angles.append(row)
            replicates += [{**at, "group": g, "spearman": x["spearman"], "share_obtuse": x["share_obtuse"]}
                           for g, x in enumerate(reps)]
            binned += [{**at, "angle": c, "attention": a}
                       for c, a in zip(st["bin_centres"], st["attention_by_angle"])]

    last = max(r["epoch"] for r in angles)
    summary = {"epoch": last, "ci_level": ci["level"], "heads_together": {}, "angle": {}}
    for r in heads:
        if r["epoch"] == last and r["head"] == "all":
            summary["heads_together"][r["site"]] = {k: r[k] for k in SUMMARY}
    for r in angles:
        if r["epoch"] == last:
            summary["angle"][r["site"]] = {f"{k}{end}": r[f"{k}{end}"] for k in ("spearman", "share_obtuse")
                                           for end in ("", "_ci_low", "_ci_high")}
    used = (f"{tokens_used(meta)}; angles and attention among the patch tokens (softmax over all "
            f"{meta['num_tokens']} tokens)")
    with atomic_dir(run.plots("qk")) as tmp:
        write_csv(tmp / "heads.csv", heads)
        write_csv(tmp / "spectra.csv", spectra)
        write_csv(tmp / "angles.csv", angles)
        write_csv(tmp / "replicates.csv", replicates)
        write_csv(tmp / "attention_by_angle.csv", binned)
        # DVC plot data: across depth at the last checkpoint
        write_csv(tmp / "depth.csv", [{**a, **{k: h[k] for k in SUMMARY}} for a in angles if a["epoch"] == last
                                      for h in heads if h["epoch"] == last and h["head"] == "all"
                                      and h["depth"] == a["depth"]])
        write_tokens_used(tmp, meta, used)
    write_json(run.metrics("qk"), summary)
    print(f"QK spectra ({num_heads} heads and together) and angle vs attention ({n} images) for "
          f"{len({r['epoch'] for r in angles})} checkpoints; {used} -> {run.plots('qk')}, {run.metrics('qk')}")


if __name__ == "__main__":
    run_stage("qk", main)
