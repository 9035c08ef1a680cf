"""Training a timm ViT classifier, with scheduled checkpoints and resume from the last complete epoch.

Readable, straight-line code in the nanoGPT habit. AdamW (timm's optimizer factory, no weight decay
on norms and biases), linear warmup then cosine (timm's CosineLRScheduler, stepped per update),
label smoothing, gradient clipping. Every epoch draws its shuffling and augmentation from a
generator seeded by (seed, epoch), so a run resumed from epoch k is bit-for-bit the run that was
never interrupted.

Distributed (torchrun, DistributedDataParallel): every rank draws the same shuffling and
augmentation for the whole global batch and trains on its share of the rows; DDP averages the
gradients, so a run on R processes follows the single-process run with the same global batch (up
to floating-point reduction order; dropout and drop-path draws differ). Rank 0 alone evaluates,
logs and writes checkpoints.

Checkpoint directory:
  epoch_XXX.safetensors  model weights at each scheduled epoch (epoch 0 = initialisation)
  resume.pt              model + optimizer after the last complete epoch (removed when done)
  config.json            written last: the model's timm kwargs, the schedule, the classes
"""
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import accuracy
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from tgo.augment import deit_augment, draw, slice_draws
from tgo.io import TGOError, write_json
from tgo.models import to_input


def config_hash(*objs):
    return hashlib.sha256(json.dumps(objs, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_schedule(epochs_list, epochs):
    """Sorted checkpoint epochs, always including 0 (initialisation) and the last epoch."""
    bad = [e for e in epochs_list if not isinstance(e, int) or e < 0 or e > epochs]
    if bad:
        raise TGOError(f"train.checkpoint_epochs: {bad} outside 0..{epochs} (train.epochs); "
                       "list epochs between 0 and train.epochs")
    return sorted(set(epochs_list) | {0, epochs})


def checkpoint_name(epoch):
    return f"epoch_{epoch:03d}.safetensors"


def world():
    """(rank, number of processes): (0, 1) unless this process was started by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def torchrun(script, nproc_per_node, nnodes=1, rdzv_endpoint=None):
    """Run `script` under torchrun on this machine (the other nodes start the same command)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"]
    if nnodes > 1:
        if not rdzv_endpoint:
            raise TGOError("train.rdzv_endpoint is not set; with train.nnodes > 1 give host:port of a node "
                           "that every node can reach")
        cmd += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}"]
    else:
        cmd += ["--standalone"]
    print("launching:", " ".join(cmd[1:] + [script]), flush=True)
    if subprocess.run(cmd + [script]).returncode:
        raise TGOError("train: a distributed worker failed; its error is printed above")


def augment(x, gen, pad, n_batch=None, start=0):
    """Batched random horizontal flip and random translation (reflect-pad, crop) of uint8 NHWC.

    The random draws are made for a batch of n_batch images (default len(x)) of which x holds rows
    start:start+len(x) (a rank's share), so each row gets what a single process would give it.
    """
    n, h, w, _ = x.shape
    n_batch = n_batch or n
    part = slice(start, start + n)
    dev = x.device
    flip = (torch.rand(n_batch, generator=gen) < 0.5)[part].to(dev)
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(2), x)
    if pad:
        xp = F.pad(x.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="reflect")
        dy, dx = torch.randint(0, 2 * pad + 1, (2, n_batch), generator=gen)[:, part].to(dev)
        rows = (dy.view(n, 1) + torch.arange(h, device=dev)).view(n, 1, h, 1)
        cols = (dx.view(n, 1) + torch.arange(w, device=dev)).view(n, 1, 1, w)
        xp = xp[torch.arange(n, device=dev).view(n, 1, 1, 1), torch.arange(3, device=dev).view(1, 3, 1, 1), rows, cols]
        x = xp.to(torch.uint8).permute(0, 2, 3, 1)
    return x


def device_batches(images, labels, index_batches, device):
    """Yield (uint8 N×H×W×3, labels) on `device` for each array of row indices.

    A background thread gathers the rows from the memory map (torch.index_select, which releases
    the GIL) into pinned memory and starts the copy to the GPU while the previous batch trains.
    """
    with warnings.catch_warnings():  # a read-only memory map; only ever read here
        warnings.simplefilter("ignore", UserWarning)
        images_t = torch.from_numpy(images)
    pin = device.type == "cuda"

    def load(idx):
        idx = torch.from_numpy(np.asarray(idx))
        x = torch.empty((len(idx), *images_t.shape[1:]), dtype=torch.uint8, pin_memory=pin)
        torch.index_select(images_t, 0, idx, out=x)
        y = torch.from_numpy(labels[idx.numpy()])
        return x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)

    with ThreadPoolExecutor(1) as pool:
        ahead = deque(pool.submit(load, idx) for idx in index_batches[:2])
        for idx in index_batches[2:]:
            ahead.append(pool.submit(load, idx))
            yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def training_batch(xb, y, gen, cfg, size, n_batch, start, mixup=None, erase=None):
    """A uint8 batch on the device -> (network input, targets) per the train.augment recipe. Random
    draws are made for the whole global batch of n_batch rows, of which xb holds start:start+len(xb)."""
    if cfg["augment"] == "deit":
        x = deit_augment(xb, slice_draws(draw(n_batch, gen, cfg), slice(start, start + len(xb))), size)
    else:
        x = to_input(augment(xb, gen, cfg["augment_pad"], n_batch, start), size)
    if mixup:
        x, y = mixup(x, y)
    if erase:
        x = erase(x)
    return x, y


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


def device_of(model):
    return next(model.parameters()).device


def pick_device():
    """This process's GPU (torchrun's LOCAL_RANK) if there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


@torch.no_grad()
def evaluate(model, images, labels, batch_size, amp=None):
    """Mean cross-entropy, top-1 and top-5 accuracy (percent) over a whole split (centre crops)."""
    model.eval()
    total_loss, top1, top5, n = 0.0, 0.0, 0.0, len(labels)
    k = min(5, model.num_classes)
    device, size = device_of(model), model.patch_embed.img_size[0]
    index = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    for xb, y in device_batches(images, labels, index, device):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            logits = model(to_input(xb, size)).float()
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        a1, a5 = accuracy(logits, y, topk=(1, k))
        top1 += a1.item() * len(y)
        top5 += a5.item() * len(y)
    return {"loss": total_loss / n, "top1": top1 / n, "top5": top5 / n}


def _save_atomic(save_fn, path):
    tmp = path.with_name(f".{path.name}.tmp")
    save_fn(tmp)
    os.replace(tmp, path)


def save_weights(model, path):
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _save_atomic(lambda p: save_file(state, str(p)), Path(path))


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
    if steps_per_epoch == 0:
        raise TGOError(f"train.batch_size={bs} exceeds the train split ({len(train_labels)} images)")
    rank, n_ranks = world()
    if bs % n_ranks:
        raise TGOError(f"train.batch_size={bs} does not split over {n_ranks} processes; use a multiple of "
                       "train.nproc_per_node x train.nnodes")
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
    state = torch.load(resume_path, weights_only=True, map_location=device) if resume_path.exists() else None
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
        _save_atomic(lambda p: torch.save({"run_hash": run_hash, "epoch": epoch, "history": history,
                                           "model": model.state_dict(),
                                           "optimizer": optimizer.state_dict()}, p), resume_path)
    return history, schedule


def finish(ckpt_dir, model_kwargs, schedule, classes, run_hash):
    """Mark the checkpoint directory complete: write config.json, drop the resume state."""
    ckpt_dir = Path(ckpt_dir)
    write_json(ckpt_dir / "config.json", {"model_kwargs": model_kwargs, "checkpoints": schedule,
                                          "classes": classes, "run_hash": run_hash})
    (ckpt_dir / "resume.pt").unlink(missing_ok=True)
