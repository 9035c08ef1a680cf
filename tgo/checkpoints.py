"""The checkpoint directory (data/checkpoints): what train writes and extract and qk read.

  epoch_XXX.safetensors  model weights at each scheduled epoch (epoch 0 = initialisation)
  config.json            `model_kwargs` that rebuild the model (tgo.models.create_model, with its
                         preprocessing), the schedule, the classes
  init/                  pretrained weights only: their untrained network, the same architecture at
                         seeded random initialisation, as a checkpoint directory of its own (epoch 0);
                         every claim is also decided on it (tgo.claims)

A run in progress writes into data/train-work/ instead: the same epoch files plus resume.pt (model
and optimizer after the last complete epoch). It is no DVC output, so neither `dvc repro` nor
`dvc exp run` touches it, and a killed run resumes from it whichever of the two starts it again
(tgo.training). `publish` moves a finished run into data/checkpoints. Every file is written through
tgo.io.atomic_path, so a killed run never leaves one half-written; data/.train.lock (a PID) keeps
a second trainer out of the work directory.
"""
import hashlib
import json
import os
import shutil
from pathlib import Path

# numpy, not torch: qk reads weights without paying torch's import (seconds per process).
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from tgo.io import TGOError, atomic_dir, atomic_file, read_json, write_json
from tgo.runs import INIT


def checkpoint_name(epoch):
    return f"epoch_{epoch:03d}.safetensors"


def checkpoint_schedule(epochs_list, epochs):
    """Sorted checkpoint epochs, always including 0 (initialisation) and the last epoch (the params
    schema has checked that every listed epoch lies in 0..epochs)."""
    return sorted(set(epochs_list) | {0, epochs})


def config_hash(*objs):
    return hashlib.sha256(json.dumps(objs, sort_keys=True).encode()).hexdigest()[:16]


def save_weights(model, path):
    """A model's state dict as a safetensors file (the same bytes as safetensors.torch writes)."""
    state = {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}
    with atomic_file(path, "wb") as f:  # bytes written by Python: a full disk is an OSError (ENOSPC)
        f.write(save(state))


def checkpoint_digest(ckpt_dir, epoch):
    """SHA-256 of a checkpoint file: what identifies its weights."""
    with open(Path(ckpt_dir) / checkpoint_name(epoch), "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_checkpoint(ckpt_dir, epoch):
    """The state dict of the checkpoint at `epoch`, numpy arrays by name (safetensors: no code runs
    on load); `torch.from_numpy` makes them tensors without a copy."""
    path = Path(ckpt_dir) / checkpoint_name(epoch)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise TGOError(f"{path}: unreadable checkpoint ({str(e).splitlines()[0]}); train again with "
                       "dvc repro -f -s train") from None


def write_config(ckpt_dir, model_kwargs, schedule, classes, run_hash):
    write_json(Path(ckpt_dir) / "config.json", {"model_kwargs": model_kwargs, "checkpoints": schedule,
                                                "classes": classes, "run_hash": run_hash})


def publish(work, ckpt_dir, model_kwargs, schedule, classes, run_hash):
    """Move a finished run from the work directory into the checkpoint directory (one rename), then
    drop the work directory with its resume state. Files are hard-linked (no copy of the weights),
    so a run killed in between still finds its complete work directory."""
    work = Path(work)
    with atomic_dir(ckpt_dir) as tmp:
        for epoch in schedule:
            name = checkpoint_name(epoch)
            try:
                os.link(work / name, tmp / name)
            except OSError:  # a filesystem without hard links
                shutil.copy2(work / name, tmp / name)
        write_config(tmp, model_kwargs, schedule, classes, run_hash)
    shutil.rmtree(work)


def import_weights(model, weights, ckpt_dir, classes, untrained=None):
    """Weights analysed instead of trained: the model (as tgo.models.create_model loaded them)
    becomes the one checkpoint, epoch 0, with the kwargs that rebuild it; `untrained` (model, seed),
    the same architecture at random initialisation with that seed, becomes the checkpoint of init/.
    Returns the model's parameter count."""
    with atomic_dir(ckpt_dir) as tmp:
        save_weights(model, tmp / checkpoint_name(0))
        write_config(tmp, model.create_kwargs, [0], classes, config_hash(model.create_kwargs, str(weights)))
        if untrained is not None:
            init, seed = untrained
            (tmp / INIT).mkdir()
            save_weights(init, tmp / INIT / checkpoint_name(0))
            write_config(tmp / INIT, init.create_kwargs, [0], classes,
                         config_hash(init.create_kwargs, f"random initialisation (seed {seed})"))
    return sum(p.numel() for p in model.parameters())


def read_config(ckpt_dir):
    path = Path(ckpt_dir) / "config.json"
    if not path.exists():
        raise TGOError(f"{path}: not found; run the train stage first (dvc repro train)")
    return read_json(path)
