"""Training a timm ViT classifier, with scheduled checkpoints and resume from the last complete epoch.

Readable, straight-line code in the nanoGPT habit. AdamW (timm's optimizer factory, no weight decay
on norms and biases), linear warmup then cosine (timm's CosineLRScheduler, stepped per update),
label smoothing, gradient clipping. Every epoch draws its shuffling and augmentation from a
generator seeded by (seed, epoch), so a run resumed from epoch k is bit-for-bit the run that was
never interrupted.

Checkpoint directory:
  epoch_XXX.safetensors  model weights at each scheduled epoch (epoch 0 = initialisation)
  resume.pt              model + optimizer after the last complete epoch (removed when done)
  config.json            written last: the model's timm kwargs, the schedule, the classes
"""
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import accuracy
from tqdm import tqdm

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


def augment(x, gen, pad):
    """Batched random horizontal flip and random translation (reflect-pad, crop) of uint8 NHWC."""
    n, h, w, _ = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(2), x)
    if pad:
        xp = F.pad(x.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="reflect")
        dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
        rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
        cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w)
        xp = xp[torch.arange(n).view(n, 1, 1, 1), torch.arange(3).view(1, 3, 1, 1), rows, cols]
        x = xp.to(torch.uint8).permute(0, 2, 3, 1)
    return x


@torch.no_grad()
def evaluate(model, images, labels, batch_size):
    """Mean cross-entropy, top-1 and top-5 accuracy (percent) over a whole split."""
    model.eval()
    total_loss, top1, top5, n = 0.0, 0.0, 0.0, len(labels)
    k = min(5, model.num_classes)
    for i in range(0, n, batch_size):
        x = to_input(torch.from_numpy(np.array(images[i:i + batch_size])))
        y = torch.from_numpy(labels[i:i + batch_size])
        logits = model(x)
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
    _save_atomic(lambda p: save_file(model.state_dict(), str(p)), Path(path))


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

    optimizer = create_optimizer_v2(model, opt="adamw", lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    warmup = round(cfg["warmup_epochs"] * steps_per_epoch)
    scheduler = CosineLRScheduler(optimizer, t_initial=max(1, epochs * steps_per_epoch - warmup),
                                  lr_min=cfg["lr"] * cfg["min_lr_ratio"], warmup_t=warmup,
                                  warmup_lr_init=cfg["lr"] * cfg["min_lr_ratio"], warmup_prefix=True,
                                  t_in_epochs=False)
    criterion = LabelSmoothingCrossEntropy(smoothing=cfg["label_smoothing"])

    resume_path = ckpt_dir / "resume.pt"
    start_epoch, history = 0, []
    state = torch.load(resume_path, weights_only=True) if resume_path.exists() else None
    if state is not None and state["run_hash"] == run_hash:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
        print(f"resuming from epoch {start_epoch} (the last complete epoch in {resume_path})")
    else:
        # Stale checkpoints from other params (the directory persists between runs): start over.
        for p in ckpt_dir.iterdir():
            p.unlink()
        save_weights(model, ckpt_dir / checkpoint_name(0))
    for row in history:
        log_epoch(row)

    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        torch.manual_seed(seed * 100_003 + epoch)  # dropout / drop-path draws
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        perm = torch.randperm(len(train_labels), generator=gen).numpy()
        running = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", unit="step", leave=False)
        for step in bar:
            idx = perm[step * bs:(step + 1) * bs]
            x = augment(torch.from_numpy(train_images[idx]), gen, cfg["augment_pad"])
            y = torch.from_numpy(train_labels[idx])
            scheduler.step_update(num_updates=(epoch - 1) * steps_per_epoch + step)
            loss = criterion(model(to_input(x)), y)
            if not math.isfinite(loss.item()):
                raise TGOError(f"train: loss is {loss.item()} at epoch {epoch} step {step}; "
                               "lower train.lr or raise train.warmup_epochs")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["clip_grad"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
            optimizer.step()
            running += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")

        val = evaluate(model, val_images, val_labels, cfg["eval_batch_size"])
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
