"""qk: per checkpoint and block, the spectra of W_Q W_K^T (per head and heads together) and the
angle between patch vectors vs their attention -> reports/qk/, reports/metrics/qk.json."""
from pathlib import Path

import numpy as np
from safetensors.torch import load_file
from tqdm import tqdm

from tgo.capture import checkpoint_dirs
from tgo.geometry.qk import (angle_attention_stats, attention_from_inputs, decompose, head_projections,
                             heads_together, layer_norm)
from tgo.io import TGOError, atomic_dir, load_params, read_json, run_stage, write_csv, write_json
from tgo.models import build_model
from tgo.training import checkpoint_name

CKPT, ACTS = Path("data/checkpoints"), Path("data/activations")
OUT, METRICS = Path("reports/qk"), "reports/metrics/qk.json"
SUMMARY = ("sym_fraction_positive", "sym_mass_positive", "asym_sym_ratio", "sv_top_share", "sv_decay")


def main():
    cfg = load_params()["qk"]
    if cfg["max_images"] < 1 or cfg["angle_bins"] < 2:
        raise TGOError(f"qk.max_images={cfg['max_images']}, qk.angle_bins={cfg['angle_bins']}: "
                       "need at least 1 image and 2 bins")
    run = read_json(CKPT / "config.json")
    norm1 = build_model(run["model_kwargs"]).blocks[0].norm1
    num_heads, eps = run["model_kwargs"]["num_heads"], norm1.eps

    heads, spectra, angles, binned = [], [], [], []
    for act_dir in tqdm(checkpoint_dirs(ACTS), desc="checkpoints", unit="ckpt"):
        meta = read_json(act_dir / "meta.json")
        epoch, p0 = meta["epoch"], meta["num_prefix_tokens"]
        w = {k: v.double().numpy() for k, v in load_file(str(CKPT / checkpoint_name(epoch))).items()}
        residual = np.load(act_dir / "residual.npy", mmap_mode="r")
        n = min(cfg["max_images"], meta["n_images"])
        for b in range(meta["depth"]):
            pre = f"blocks.{b}."
            w_q, w_k = head_projections(w[pre + "attn.qkv.weight"], num_heads)
            for h in range(num_heads):
                d = decompose(w_q[h], w_k[h])
                heads.append({"epoch": epoch, "block": b + 1, "head": h, **{k: d[k] for k in SUMMARY}})
            together = heads_together(w_q, w_k)
            heads.append({"epoch": epoch, "block": b + 1, "head": "all", **{k: together[k] for k in SUMMARY}})
            for kind in ("sym_eigenvalues", "asym_magnitudes", "singular_values"):
                spectra += [{"epoch": epoch, "block": b + 1, "kind": kind, "index": i + 1, "value": v}
                            for i, v in enumerate(together[kind])]

            # Angles and attention among the tokens that enter attention: norm1 of the block input.
            x = np.load(act_dir / "embed.npy", mmap_mode="r")[:n] if b == 0 else residual[b - 1, :n]
            hidden = layer_norm(np.asarray(x, dtype=np.float64), w[pre + "norm1.weight"], w[pre + "norm1.bias"], eps)
            attn = attention_from_inputs(hidden, w[pre + "attn.qkv.weight"], w[pre + "attn.qkv.bias"], num_heads)
            st = angle_attention_stats(hidden, attn, p0, cfg["angle_bins"])
            angles.append({"epoch": epoch, "block": b + 1, "spearman": st["spearman"],
                           "share_obtuse": st["share_obtuse"], "n_pairs": st["n_pairs"]})
            binned += [{"epoch": epoch, "block": b + 1, "angle": c, "attention": a}
                       for c, a in zip(st["bin_centres"], st["attention_by_angle"])]

    last = max(r["epoch"] for r in angles)
    summary = {"epoch": last, "heads_together": {}, "angle": {}}
    for r in heads:
        if r["epoch"] == last and r["head"] == "all":
            summary["heads_together"][f"block_{r['block']}"] = {k: r[k] for k in SUMMARY}
    for r in angles:
        if r["epoch"] == last:
            summary["angle"][f"block_{r['block']}"] = {"spearman": r["spearman"], "share_obtuse": r["share_obtuse"]}
    with atomic_dir(OUT) as tmp:
        write_csv(tmp / "heads.csv", heads)
        write_csv(tmp / "spectra.csv", spectra)
        write_csv(tmp / "angles.csv", angles)
        write_csv(tmp / "attention_by_angle.csv", binned)
        # DVC plot data: across depth at the last checkpoint
        write_csv(tmp / "depth.csv", [{**a, **{k: h[k] for k in SUMMARY}} for a in angles if a["epoch"] == last
                                      for h in heads if h["epoch"] == last and h["head"] == "all"
                                      and h["block"] == a["block"]])
    write_json(METRICS, summary)
    print(f"QK spectra ({num_heads} heads and together) and angle vs attention ({n} images) for "
          f"{len({r['epoch'] for r in angles})} checkpoints -> {OUT}, {METRICS}")


if __name__ == "__main__":
    run_stage("qk", main)
