"""Benchmark: training throughput with the real data path against the same step fed from the device.

Real path: uint8 images in a memory-mapped .npy -> tgo.loader.device_batches (gather into pinned
memory on a background thread, copy to the device) -> training_batch (the DeiT recipe on the device:
random resized crop, flip, RandAugment subset, mixup/cutmix, random erasing) -> train_step.
Ceiling: train_step alone on one batch that already sits on the device, augmented once.
Serial: the same steps as the real path with each batch gathered and copied in the training loop itself
(no background thread, no copy stream, pageable memory): what the prefetching overlaps.
All three run in the same process, after warm-up steps; the ratio real / ceiling says how much the
data path costs, real / serial how much overlapping the gather and the copy with compute gains.
With --rounds R the three take turns R times, --steps steps each per round, so that a load changing
during the run (other work on a shared CPU) weighs on them alike; the ratios' range over the rounds
says how far to trust them.

    .venv/bin/python bench/train_throughput.py                 # CPU: a small ViT at 32 px
    python bench/train_throughput.py --gpu-preset              # GPU: ViT-S/16 at 224 px, bf16
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
import yaml
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2

from tgo.augment import training_batch
from tgo.distributed import device_name, pick_device
from tgo.loader import device_batches
from tgo.training import train_step

RECIPE = {"augment": "deit", "rrc_scale": [0.08, 1.0], "hflip": 0.5, "randaug_ops": 2, "randaug_magnitude": 9,
          "randaug_std": 0.5, "augment_pad": 0, "clip_grad": 0.0}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run_steps, steps, device):
    sync(device)
    t0 = time.perf_counter()
    run_steps(steps)
    sync(device)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu-preset", action="store_true", help="ViT-S/16, 224 px from 256 px, batch 256, bf16")
    ap.add_argument("--model", default="vit_tiny_patch16_224")
    ap.add_argument("--arch", default="patch_size=4,depth=6,embed_dim=192,num_heads=3",
                    help="timm keyword overrides, k=v,... ('' for the model's own)")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--stored-size", type=int, default=36)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=2048, help="images in the memory-mapped file")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="times the three paths take turns, --steps each")
    ap.add_argument("--amp", default=None, choices=[None, "bf16"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, help="torch's intra-op threads (default: torch's own choice)")
    a = ap.parse_args()
    if a.gpu_preset:
        a.model, a.arch, a.img_size, a.stored_size, a.batch, a.amp = "vit_small_patch16_224", "", 224, 256, 256, "bf16"
        a.images = max(a.images, 8192)

    if a.threads:
        torch.set_num_threads(a.threads)
    device = pick_device()
    arch = {k: yaml.safe_load(v) for k, v in (kv.split("=") for kv in a.arch.split(",") if kv)}
    model = timm.create_model(a.model, pretrained=False, num_classes=100, img_size=a.img_size,
                              drop_path_rate=0.1, **arch).to(device)
    net = torch.compile(model) if a.compile else model
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = create_optimizer_v2(model, opt="adamw", lr=5e-4, weight_decay=0.05, **fused)
    cfg = {**RECIPE, "amp": a.amp}
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=100)
    erase = RandomErasing(0.25, mode="pixel", device=device)
    criterion = SoftTargetCrossEntropy()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(a.images, a.stored_size, a.stored_size, 3))
        rng = np.random.default_rng(0)
        for s in range(0, a.images, 512):
            mm[s:s + 512] = rng.integers(0, 256, mm[s:s + 512].shape, dtype=np.uint8)
        mm.flush()
        del mm
        images = np.load(path, mmap_mode="r")
        labels = rng.integers(0, 100, a.images)
        gen = torch.Generator().manual_seed(0)
        model.train()

        def real(steps):
            index = [rng.choice(a.images, a.batch, replace=False) for _ in range(steps)]
            for xb, y in device_batches(images, labels, index, device):
                x, t = training_batch(xb, y, gen, cfg, a.img_size, a.batch, 0, mixup, erase)
                train_step(model, net, optimizer, criterion, x, t, cfg)

        def serial(steps):
            for _ in range(steps):
                idx = rng.choice(a.images, a.batch, replace=False)
                xb = torch.from_numpy(images[idx]).to(device)
                x, t = training_batch(xb, torch.from_numpy(labels[idx]).to(device), gen, cfg, a.img_size, a.batch,
                                      0, mixup, erase)
                train_step(model, net, optimizer, criterion, x, t, cfg)

        xb, y = next(device_batches(images, labels, [np.arange(a.batch)], device))
        x0, t0 = training_batch(xb, y, gen, cfg, a.img_size, a.batch, 0, mixup, erase)

        def ceiling(steps):
            for _ in range(steps):
                train_step(model, net, optimizer, criterion, x0, t0, cfg)

        paths = {"ceiling": ceiling, "real": real, "serial": serial}
        for run_steps in paths.values():
            timed(run_steps, a.warmup, device)
        rounds = [{k: timed(run_steps, a.steps, device) for k, run_steps in paths.items()} for _ in range(a.rounds)]

    t = {k: sum(r[k] for r in rounds) for k in paths}
    n = a.rounds * a.steps * a.batch

    def ratio(other):
        """real / other in images/s over all rounds, with its range over the rounds when there are several."""
        per_round = [r[other] / r["real"] for r in rounds]
        return f"{t[other] / t['real']:.3f}" + (f" (rounds {min(per_round):.3f}..{max(per_round):.3f})"
                                               if a.rounds > 1 else "")

    print(f"{a.model} {a.arch or '(timm defaults)'} at {a.img_size} px from {a.stored_size} px, batch {a.batch}, "
          f"amp {a.amp}, compile {a.compile}, on {device_name(device)}; {a.rounds} x {a.steps} timed steps per path "
          f"after {a.warmup} warm-up")
    if device.type == "cpu":
        print("CPU version: the device is the CPU, with no copy to it, so real / ceiling is the cost of the gather "
              "and the augmentation on the same cores, real / serial the gain of gathering on a background thread")
    print(f"real data path    : {n / t['real']:9.1f} images/s")
    print(f"device-fed ceiling: {n / t['ceiling']:9.1f} images/s")
    print(f"serial data path  : {n / t['serial']:9.1f} images/s")
    print(f"ratio real / ceiling: {ratio('ceiling')}")
    print(f"ratio real / serial : {ratio('serial')}")


if __name__ == "__main__":
    main()
