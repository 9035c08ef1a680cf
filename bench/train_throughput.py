"""Benchmark: training throughput with the real data path against the same step fed from the device.

Real path: uint8 images in a memory-mapped .npy -> tgo.loader.device_batches (gather into pinned
memory on a background thread, copy to the device) -> training_batch (the DeiT recipe on the device:
random resized crop, flip, RandAugment subset, mixup/cutmix, random erasing) -> train_step.
Ceiling: train_step alone on one batch that already sits on the device, augmented once.
Serial: the same steps as the real path with each batch gathered and copied in the training loop itself
(no background thread, no copy stream, pageable memory): what the prefetching overlaps.
All three run in the same process, after warm-up steps; the ratio real / ceiling says how much the
data path costs, real / serial how much overlapping the gather and the copy with compute gains.

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
    ap.add_argument("--amp", default=None, choices=[None, "bf16"])
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    if a.gpu_preset:
        a.model, a.arch, a.img_size, a.stored_size, a.batch, a.amp = "vit_small_patch16_224", "", 224, 256, 256, "bf16"
        a.images = max(a.images, 8192)

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

        timed(ceiling, a.warmup, device)
        timed(real, a.warmup, device)
        timed(serial, a.warmup, device)
        t_ceiling = timed(ceiling, a.steps, device)
        t_real = timed(real, a.steps, device)
        t_serial = timed(serial, a.steps, device)

    n = a.steps * a.batch
    name = device_name(device)
    print(f"{a.model} {a.arch or '(timm defaults)'} at {a.img_size} px from {a.stored_size} px, batch {a.batch}, "
          f"amp {a.amp}, compile {a.compile}, on {name}; {a.steps} timed steps after {a.warmup} warm-up")
    print(f"real data path    : {n / t_real:9.1f} images/s")
    print(f"device-fed ceiling: {n / t_ceiling:9.1f} images/s")
    print(f"serial data path  : {n / t_serial:9.1f} images/s")
    print(f"ratio real / ceiling: {t_ceiling / t_real:.3f}")
    print(f"ratio real / serial : {t_serial / t_real:.3f}")


if __name__ == "__main__":
    main()
