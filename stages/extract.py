"""extract: per checkpoint, the probe images' activations at every block -> data/activations/."""
import numpy as np

from tgo.activations import ACTIVATIONS, PER_BLOCK, checkpoint_dir
from tgo.capture import capture, layout, probe_indices
from tgo.checkpoints import CHECKPOINTS, checkpoint_name, load_checkpoint, read_config
from tgo.data import load_prepared
from tgo.io import atomic_dir, require_free_space, run_stage, write_json
from tgo.models import build_model
from tgo.params import load

DATA = "data/prepared"


def main():
    cfg = load("extract")
    run = read_config()
    images, labels, _ = load_prepared(DATA, "val")
    idx = probe_indices(len(labels), cfg["probe_size"], cfg["seed"])
    probe = np.asarray(images[idx])
    model = build_model(run["model_kwargs"])
    shape = layout(model)  # float16 sites: embed and final norm, and residual, attn, mlp per block
    sites = 2 + len(PER_BLOCK) * shape["n_blocks"]
    require_free_space(ACTIVATIONS, len(run["checkpoints"]) * sites * len(idx) * shape["num_tokens"] * shape["dim"] * 2)

    with atomic_dir(ACTIVATIONS) as tmp:
        for epoch in run["checkpoints"]:
            model.load_state_dict(load_checkpoint(CHECKPOINTS, epoch))
            out = checkpoint_dir(epoch, tmp)
            out.mkdir()
            info = capture(model, probe, cfg["batch_size"], out, desc=f"checkpoint {epoch}")
            np.save(out / "labels.npy", labels[idx])
            write_json(out / "meta.json", {
                "epoch": epoch, "checkpoint": checkpoint_name(epoch), "probe_indices": idx.tolist(),
                "n_images": len(idx), **info,
                "sites": {"embed": "tokens entering block 1 (patch + position embedding)",
                          **{s: f"per block, shape (blocks, N, tokens, D): {s}" for s in PER_BLOCK},
                          "final_norm": "output of the final LayerNorm"},
                "token_layout": "prefix tokens (CLS) first, then patches row-major on the grid",
            })
    print(f"extracted {len(idx)} probe images x {len(run['checkpoints'])} checkpoints "
          f"({info['n_blocks']} blocks, {info['num_tokens']} tokens, D={info['dim']}) -> {ACTIVATIONS}")


if __name__ == "__main__":
    run_stage("extract", main)
