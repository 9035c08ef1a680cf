"""extract: per checkpoint, the probe images' activations at every block -> data/activations/
(or, with --zoo <id>, the zoo model's data/zoo/<id>/activations/); for pretrained weights also their
untrained network (checkpoints/init/ -> activations/init/). Finished checkpoints wait in
data/extract-work/ (no DVC output) until all are done, so a killed extract resumes at the checkpoint
where it stopped."""
import json

import numpy as np
import torch

from tgo.activations import PER_BLOCK, extracted, publish_extraction, start_extraction, tokens_used
from tgo.capture import capture, layout, probe_indices
from tgo.checkpoints import checkpoint_digest, checkpoint_name, load_checkpoint, read_config
from tgo.data import load_prepared
from tgo.distributed import device_name, pick_device
from tgo.io import atomic_dir, require_free_space, run_stage, write_json
from tgo.models import create_model, input_config, resize_mode, resize_target
from tgo.params import load
from tgo.runs import INIT, PREPARED, from_argv



def main():
    run = from_argv()
    cfg = load("extract")
    config = read_config(run.checkpoints)
    images, labels, _ = load_prepared(PREPARED, "val")
    idx = probe_indices(len(labels), cfg["probe_size"], cfg["seed"])
    probe = np.asarray(images[idx])
    model = create_model(**config["model_kwargs"])
    model_layout, preprocessing = layout(model), input_config(model)
    stored, side = probe.shape[1], resize_target(preprocessing)
    resize = f"resized {stored} -> {side} px ({resize_mode(preprocessing)})" if side != stored else "not resized"
    if side > stored:
        print(f"note: the stored {stored} px images are upsampled to {side} px for this model; prepare larger "
              "images (prepare.image_size) to give it its native detail")
    # float16 sites: embed and final norm, residual, attn, mlp per block (and the head's input per site)
    sites = 2 + len(PER_BLOCK) * model_layout["n_blocks"]
    per_checkpoint = sites * len(idx) * model_layout["num_tokens"] * model_layout["dim"] * 2
    # (where its activations go, its checkpoint directory, epoch): every checkpoint, then the untrained
    # network of pretrained weights (a checkpoint directory of its own, init/).
    checkpoints = [(f"epoch_{e:03d}", run.checkpoints, e) for e in config["checkpoints"]]
    if (run.checkpoints / INIT).is_dir():
        checkpoints.append((f"{INIT}/epoch_000", run.checkpoints / INIT, 0))
    # What the activations depend on: a work directory extracted from anything else starts over.
    device = pick_device()
    fingerprint = {"checkpoints": {name: checkpoint_digest(ckpt, e) for name, ckpt, e in checkpoints},
                   "model_kwargs": config["model_kwargs"], "probe_indices": idx.tolist(),
                   "batch_size": cfg["batch_size"], "input": preprocessing, "precision": cfg["precision"],
                   "device": device.type}
    fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from JSON
    done = extracted(run.extract_work, fingerprint)
    todo = [c for c in checkpoints if c[0] not in done]
    require_free_space(run.extract_work, len(todo) * per_checkpoint)
    if not done:
        start_extraction(run.extract_work, fingerprint)
    else:
        print(f"resuming: {', '.join(done)} already extracted in {run.extract_work}; starting at {todo[0][0]}"
              if todo else f"resuming: every checkpoint already extracted in {run.extract_work}")

    for name, ckpt, epoch in todo:
        weights = load_checkpoint(ckpt, epoch)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        with atomic_dir(run.extract_work / name) as out:
            capture(model, probe, cfg["batch_size"], out, preprocessing, desc=name, device=device,
                    precision=cfg["precision"])
            np.save(out / "labels.npy", labels[idx])
            write_json(out / "meta.json", {
                "epoch": epoch, "checkpoint": str((ckpt / checkpoint_name(epoch)).relative_to(run.checkpoints)),
                "probe_indices": idx.tolist(),
                "n_images": len(idx), **model_layout,
                "input": {**preprocessing, "stored_size": stored, "resize": resize},
                "precision": cfg["precision"], "device": device.type,
                "sites": {"embed": "tokens entering block 1 (patch + position embedding, prefix tokens)",
                          **{s: f"per block, shape (blocks, N, tokens, D): {s}" for s in PER_BLOCK},
                          "final_norm": "output of the final norm",
                          **({"pooled": f"the head's input at every site: {model_layout['head_input']}"}
                             if model_layout["head_input"] else {})},
                "token_layout": "prefix tokens in the order of prefix_tokens, then patches row-major on the grid",
            })
    publish_extraction(run.extract_work, run.activations)
    untrained = " and its untrained network" if len(checkpoints) > len(config["checkpoints"]) else ""
    print(f"extracted {len(idx)} probe images x {len(config['checkpoints'])} checkpoints{untrained} of "
          f"{model.create_kwargs['name']} ({model_layout['n_blocks']} blocks, D={model_layout['dim']}; "
          f"{tokens_used(model_layout)}) on "
          f"{device_name(device)} in {cfg['precision']}; input "
          f"{preprocessing['input_size'][-1]} px, {resize}, mean {preprocessing['mean']}, std {preprocessing['std']} "
          f"-> {run.activations}")


if __name__ == "__main__":
    run_stage("extract", main, scratch=lambda: from_argv().extract_work)
