"""extract: per checkpoint, the probe images' activations at every block -> data/activations/."""
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from tgo.capture import PER_BLOCK, capture, probe_indices
from tgo.data import load_prepared
from tgo.io import TGOError, atomic_dir, load_params, read_json, run_stage, write_json
from tgo.models import build_model
from tgo.training import checkpoint_name

CKPT, DATA, OUT = Path("data/checkpoints"), "data/prepared", "data/activations"


def main():
    cfg = load_params()["extract"]
    if not (CKPT / "config.json").exists():
        raise TGOError(f"{CKPT}/config.json: not found; run the train stage first (dvc repro train)")
    run = read_json(CKPT / "config.json")
    images, labels, _ = load_prepared(DATA, "val")
    idx = probe_indices(len(labels), cfg["probe_size"], cfg["seed"])
    probe = np.asarray(images[idx])
    model = build_model(run["model_kwargs"])

    with atomic_dir(OUT) as tmp:
        for epoch in run["checkpoints"]:
            model.load_state_dict(load_file(str(CKPT / checkpoint_name(epoch))))
            out = tmp / f"epoch_{epoch:03d}"
            out.mkdir()
            info = capture(model, probe, cfg["batch_size"], out, desc=f"epoch {epoch}")
            np.save(out / "labels.npy", labels[idx])
            write_json(out / "meta.json", {
                "epoch": epoch, "checkpoint": checkpoint_name(epoch), "probe_indices": idx.tolist(),
                "n_images": len(idx), **info,
                "sites": {"embed": "tokens entering block 1 (patch + position embedding)",
                          **{s: f"per block, shape (depth, N, tokens, D): {s}" for s in PER_BLOCK},
                          "final_norm": "output of the final LayerNorm"},
                "token_layout": "prefix tokens (CLS) first, then patches row-major on the grid",
            })
    print(f"extracted {len(idx)} probe images x {len(run['checkpoints'])} checkpoints "
          f"({info['depth']} blocks, {info['num_tokens']} tokens, D={info['dim']}) -> {OUT}")


if __name__ == "__main__":
    run_stage("extract", main)
