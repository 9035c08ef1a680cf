"""Training a timm ViT classifier, with scheduled checkpoints and resume from the last complete epoch.

Readable, straight-line code in the nanoGPT habit. AdamW (timm's optimizer factory, no weight decay
on norms and biases), linear warmup then cosine (timm's CosineLRScheduler, stepped per update),
label smoothing, gradient clipping. Every epoch draws its shuffling and augmentation from a
generator seeded by (seed, epoch), so a run resumed from epoch k is bit-for-bit the run that was
never interrupted.

Distributed (torchrun, DistributedDataParallel, tgo.distributed): every rank draws the same
shuffling and augmentation for the whole global batch and trains on its share of the rows; DDP
averages the gradients, so a run on R processes follows the single-process run with the same
global batch (up to floating-point reduction order; dropout and drop-path draws differ). Rank 0
alone evaluates, logs and writes checkpoints (tgo.checkpoints).
"""
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from tgo.augment import training_batch
from tgo.checkpoints import checkpoint_name, checkpoint_schedule, config_hash, save_weights
from tgo.distributed import world
from tgo.io import TGOError, atomic_file
from tgo.evaluation import device_of, evaluate
from tgo.loader import device_batches

# Train params that do not change the weights: changing one resumes an interrupted run instead of
# starting it over (several processes follow one up to floating-point reduction order; compiling
# changes the speed, not the computation).
NOT_WEIGHTS = ("eval_batch_size", "nproc_per_node", "nnodes", "rdzv_endpoint", "compile")


def weights_hash(model_kwargs, cfg, splits):
    """A hash of what determines the weights (the model, the train params but NOT_WEIGHTS, the data):
    resume.pt is used only by a run with the same hash."""
    return config_hash(model_kwargs, {k: v for k, v in cfg.items() if k not in NOT_WEIGHTS}, splits)


def train_step(model, net, optimizer, criterion, x, y, cfg):
    """One optimisation step; returns the loss as a device tensor (no synchronisation)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg["amp"] == "bf16"):
        loss = criterion(net(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg["clip_grad"]:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
    optimizer.step()
    return loss.detach()


def save_resume(path, state):
    # Through a Python file: a full disk is then an OSError (ENOSPC), not torch's RuntimeError.
    with atomic_file(path, "wb") as f:
        torch.save(state, f)


def load_resume(path, device):
    """The resume state (weights_only: no code runs on load), or None if there is none. An
    unreadable one (a truncated file) is discarded with a warning: training restarts from scratch."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True, map_location=device)
    except Exception as e:  # truncated zip, unpickling refused, ...
        print(f"warning: {path} is unreadable ({type(e).__name__}); discarded, training restarts from scratch")
        path.unlink()
        return None


def train(model, train_data, val_data, cfg, ckpt_dir, run_hash, log_epoch):
    """Train `model` per `cfg` (the train params group), writing checkpoints into ckpt_dir.

    `log_epoch(row)` receives each epoch's metrics (also replayed for epochs done before a resume).
    Returns the history: one dict per epoch.
    """
    ckpt_dir = Path(ckpt_dir)
    train_images, train_labels = train_data
    val_images, val_labels = val_data
    epochs, bs, seed = cfg["epochs"], cfg["batch_size"], cfg["seed"]
    schedule = checkpoint_schedule(cfg["checkpoint_epochs"], epochs)
    steps_per_epoch = len(train_labels) // bs
    rank, n_ranks = world()
    local = bs // n_ranks  # this rank's rows of every global batch: rank * local ...
    device, size = device_of(model), model.patch_embed.img_size[0]
    net = model
    if n_ranks > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg["compile"]:
        net = torch.compile(net)
    deit = cfg["augment"] == "deit"
    mixup = None
    if deit and (cfg["mixup_alpha"] or cfg["cutmix_alpha"]):
        mixup = Mixup(mixup_alpha=cfg["mixup_alpha"], cutmix_alpha=cfg["cutmix_alpha"],
                      label_smoothing=cfg["label_smoothing"], num_classes=model.num_classes)
    erase = RandomErasing(cfg["random_erasing"], mode="pixel", device=device) if deit and cfg["random_erasing"] else None

    lr = cfg["lr"] * (bs / cfg["lr_base_batch"] if cfg["lr_base_batch"] else 1.0)  # DeiT: 5e-4 x batch / 512
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=cfg["weight_decay"], **fused)
    warmup = round(cfg["warmup_epochs"] * steps_per_epoch)
    scheduler = CosineLRScheduler(optimizer, t_initial=max(1, epochs * steps_per_epoch - warmup),
                                  lr_min=lr * cfg["min_lr_ratio"], warmup_t=warmup,
                                  warmup_lr_init=lr * cfg["min_lr_ratio"], warmup_prefix=True,
                                  t_in_epochs=False)
    criterion = SoftTargetCrossEntropy() if mixup else LabelSmoothingCrossEntropy(smoothing=cfg["label_smoothing"])

    resume_path = ckpt_dir / "resume.pt"
    start_epoch, history = 0, []
    state = load_resume(resume_path, device)
    if state is not None and state["run_hash"] == run_hash:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
        print(f"resuming from epoch {start_epoch} (the last complete epoch in {resume_path})")
    elif rank == 0:
        # Stale checkpoints from other params (the directory persists between runs): start over.
        for p in ckpt_dir.iterdir():
            p.unlink()
        save_weights(model, ckpt_dir / checkpoint_name(0))
    for row in history:
        log_epoch(row)

    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        epoch_seed = seed * 100_003 + epoch
        torch.manual_seed(epoch_seed)  # dropout / drop-path draws
        np.random.seed(epoch_seed + rank)  # timm's Mixup draws from numpy, RandomErasing from random
        random.seed(epoch_seed + rank)
        gen = torch.Generator().manual_seed(epoch_seed)
        perm = torch.randperm(len(train_labels), generator=gen).numpy()
        index = [perm[step * bs:(step + 1) * bs][rank * local:(rank + 1) * local] for step in range(steps_per_epoch)]
        running = torch.zeros((), dtype=torch.float64, device=device)
        bar = tqdm(device_batches(train_images, train_labels, index, device), total=steps_per_epoch,
                   desc=f"epoch {epoch}/{epochs}", unit="step", leave=False, disable=rank > 0)
        for step, (xb, y) in enumerate(bar):
            x, y = training_batch(xb, y, gen, cfg, size, bs, rank * local, mixup, erase)
            scheduler.step_update(num_updates=(epoch - 1) * steps_per_epoch + step)
            loss = train_step(model, net, optimizer, criterion, x, y, cfg)
            if n_ranks > 1:  # the global batch's mean loss, the same on every rank
                dist.all_reduce(loss)
                loss /= n_ranks
            running = running + loss.double()
            if step % 20 == 19 or step == steps_per_epoch - 1:  # sync with the device only now and then
                mean = running.item() / (step + 1)
                if not math.isfinite(mean):
                    raise TGOError(f"train: loss is {mean} by epoch {epoch} step {step}; "
                                   "lower train.lr or raise train.warmup_epochs")
                bar.set_postfix(loss=f"{mean:.3f}")
        running = running.item()

        if rank > 0:  # rank 0 evaluates, logs and saves; the others go on to the next epoch
            continue
        val = evaluate(model, val_images, val_labels, cfg["eval_batch_size"], cfg["amp"])
        row = {"epoch": epoch, "train_loss": running / steps_per_epoch, "val_loss": val["loss"],
               "val_top1": val["top1"], "val_top5": val["top5"], "lr": optimizer.param_groups[0]["lr"]}
        history.append(row)
        print(f"epoch {epoch}: train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
              f"top-1 {row['val_top1']:.1f}%  top-5 {row['val_top5']:.1f}%")
        log_epoch(row)
        if epoch in schedule:
            save_weights(model, ckpt_dir / checkpoint_name(epoch))
        save_resume(resume_path, {"run_hash": run_hash, "epoch": epoch, "history": history,
                                  "model": model.state_dict(), "optimizer": optimizer.state_dict()})
    return history, schedule
