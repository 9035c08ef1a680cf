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
                             heads_together_leave_one_out, jackknife_angle_attention_stats, layer_norm)
from tgo.io import TGOError, atomic_dir, progress, run_stage, write_csv, write_json
from tgo.params import load
from tgo.runs import INIT, from_argv

HEAD_STATISTICS = ("sym_fraction_positive", "sym_mass_positive", "asym_sym_norm_ratio", "sv1_energy_share",
                   "top10pct_sv_energy_share")
ANGLE = ("spearman", "share_obtuse")


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
    n = min(cfg["max_images"], meta["n_images"])
    groups = image_groups(n, ci["groups"], ci["seed"])
    untrained = run.activations / INIT
    with atomic_dir(run.plots("qk")) as tmp:
        heads, angles, meta = analyse(checkpoints, run.checkpoints, cfg, ci, n, groups, tmp)
        if untrained.is_dir():  # pretrained weights: their untrained network, for the claims
            analyse(activations.checkpoints(untrained), run.checkpoints / INIT, cfg, ci, n, groups, tmp / INIT)

    last = max(r["epoch"] for r in angles)
    summary = {"epoch": last, "ci_level": ci["level"], "heads_together": {}, "angle": {}}
    for r in heads:
        if r["epoch"] == last and r["head"] == "all":
            summary["heads_together"][r["site"]] = {k: r[k] for k in HEAD_STATISTICS}
    for r in angles:
        if r["epoch"] == last:
            summary["angle"][r["site"]] = {f"{k}{vec}{end}": r[f"{k}{vec}{end}"] for vec in ("", "_with_beta")
                                           for k in ANGLE for end in ("", "_ci_low", "_ci_high")}
    write_json(run.metrics("qk"), summary)
    print(f"QK spectra ({meta['attention']['num_heads']} heads and together) and angle vs attention ({n} images) for "
          f"{len({r['epoch'] for r in angles})} checkpoints{' and the untrained network' if untrained.is_dir() else ''}"
          f"; {used_text(meta)} -> {run.plots('qk')}, {run.metrics('qk')}")


def used_text(meta):
    return (f"{tokens_used(meta)}; angles and attention among the patch tokens (softmax over all "
            f"{meta['num_tokens']} tokens); angles between norm1's outputs without its bias (x_hat * gamma; "
            f"*_with_beta: with it), attention from the full norm1 output")


def analyse(checkpoints, ckpt_dir, cfg, ci, n, groups, out):
    """Every checkpoint's QK spectra (weights from ckpt_dir) and angle vs attention, with jackknife
    replicates at the first and last checkpoint, into the plot data directory `out`; returns (head
    rows, angle rows, the last checkpoint's meta)."""
    meta = checkpoints[0][1]
    num_heads, eps = meta["attention"]["num_heads"], meta["attention"]["norm_eps"]
    # Intervals at the first checkpoint (the untrained network, the null every claim is compared with)
    # and the last, paired through the same image groups.
    with_ci = {checkpoints[0][0], checkpoints[-1][0]}
    heads, head_reps, spectra, angles, binned, replicates = [], [], [], [], [], []
    for act_dir, meta in each_checkpoint(checkpoints):
        epoch, p0, n_blocks = meta["epoch"], meta["num_prefix_tokens"], meta["n_blocks"]
        w = {k: v.astype(np.float64) for k, v in load_checkpoint(ckpt_dir, epoch).items()}
        embed, residual = activations.load(act_dir, "embed"), activations.load(act_dir, "residual")
        for b in progress(range(n_blocks), desc="blocks", unit="block", leave=False):
            pre = f"blocks.{b}."
            at = {"epoch": epoch, "site": site_name(b + 1, n_blocks), "depth": b + 1}
            w_q, w_k = head_projections(w[pre + "attn.qkv.weight"], num_heads)
            for h in range(num_heads):
                d = decompose(w_q[h], w_k[h])
                heads.append({**at, "head": h, **{k: d[k] for k in HEAD_STATISTICS}})
            together = heads_together(w_q, w_k)
            heads.append({**at, "head": "all", **{k: together[k] for k in HEAD_STATISTICS}})
            if num_heads >= 2:
                head_reps += [{**at, "group": h, **{k: d[k] for k in HEAD_STATISTICS}}
                              for h, d in enumerate(heads_together_leave_one_out(w_q, w_k))]
            for kind in ("sym_eigenvalues", "asym_magnitudes", "singular_values"):
                spectra += [{**at, "kind": kind, "index": i + 1, "value": v} for i, v in enumerate(together[kind])]

            # The tokens that enter attention: norm1 of the block input. Its bias beta is one vector
            # added to every token alike, which can make the angles acute whatever the tokens are: the
            # angles are decided on x_hat * gamma, with beta beside them. Attention reads the full output.
            x = embed[:n] if b == 0 else residual[b - 1, :n]
            no_beta = layer_norm(np.asarray(x, dtype=np.float64), w[pre + "norm1.weight"], None, eps)
            hidden = no_beta + w[pre + "norm1.bias"]
            attn = head_mean_attention(hidden, w[pre + "attn.qkv.weight"], w.get(pre + "attn.qkv.bias"), num_heads)
            stats, reps = {}, {}
            for vectors, end, vecs in (("no_beta", "", no_beta), ("with_beta", "_with_beta", hidden)):
                if act_dir in with_ci:
                    st, rep = jackknife_angle_attention_stats(vecs, attn, groups, p0, cfg["angle_bins"])
                else:
                    st, rep = angle_attention_stats(vecs, attn, p0, cfg["angle_bins"]), []
                for k in ANGLE:
                    stats[k + end], reps[k + end] = st[k], [r[k] for r in rep]
                binned += [{**at, "vectors": vectors, "angle": c, "attention": a}
                           for c, a in zip(st["bin_centres"], st["attention_by_angle"])]
            row = {**at, **stats, "n_pairs": st["n_pairs"]}
            for k in stats:
                row[f"{k}_ci_low"], row[f"{k}_ci_high"] = (interval(stats[k], reps[k], ci["level"]) if reps[k]
                                                           else (np.nan, np.nan))
            angles.append(row)
            replicates += [{**at, "group": g, **{k: reps[k][g] for k in stats}} for g in range(len(reps["spearman"]))]

    last = max(r["epoch"] for r in angles)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "heads.csv", heads)
    write_csv(out / "spectra.csv", spectra)
    write_csv(out / "angles.csv", angles)
    write_csv(out / "replicates.csv", replicates)
    if head_reps:
        write_csv(out / "head_replicates.csv", head_reps)
    write_csv(out / "attention_by_angle.csv", binned)
    # DVC plot data: across depth at the last checkpoint
    write_csv(out / "depth.csv", [{**a, **{k: h[k] for k in HEAD_STATISTICS}} for a in angles if a["epoch"] == last
                                  for h in heads if h["epoch"] == last and h["head"] == "all"
                                  and h["depth"] == a["depth"]])
    write_tokens_used(out, meta, used_text(meta))
    return heads, angles, meta


if __name__ == "__main__":
    run_stage("qk", main)
