"""Weights for timm ViTs from local sources, never the network: finding them (a file, a hub cache
repo or one of its snapshots, a timm local-dir), reading them without running code, and loading
them into a timm model (tgo.models.create_model calls `load_weights`).

Sources (`create_model(name, weights=...)`):
  a file          .safetensors; a PyTorch state dict (.pth/.pt/.bin/.ckpt, read with weights_only=True,
                  so unpickling never runs code; nested 'state_dict'/'model' and 'module.' prefixes are
                  unwrapped); a JAX/Flax .npz (timm's `load_pretrained`, np.load without pickles)
  a directory     a Hugging Face hub cache repo (models--timm--NAME: refs/main names the snapshot),
                  one of its snapshots, or a timm `local-dir` (config.json + model.safetensors or
                  pytorch_model.bin); a 'local-dir:' prefix is accepted. Its config.json's
                  architecture must be the name's, and its pretrained config (mean, std, crop, ...)
                  describes the weights.
A state dict goes through the model's own timm checkpoint filter (OpenAI CLIP and original DINOv2
layouts, resized position embeddings) and is loaded strictly: every tensor must fit.
"""
import json
import os
import pickle
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before timm imports huggingface_hub: no hub requests, ever

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from safetensors import SafetensorError  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from timm.models import load_state_dict  # noqa: E402

from tgo.io import TGOError  # noqa: E402

# Keys of a weights directory's pretrained config that describe its preprocessing.
PREPROCESSING = ("input_size", "mean", "std", "crop_pct", "crop_mode", "interpolation")
# Weight files of a hub snapshot or local-dir, in timm's order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
                "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                "open_clip_pytorch_model.bin")
# Where the classifier's width can be read off a state dict before timm's filter converts it:
# timm's own layout, OpenAI CLIP's projection (D x out), OpenCLIP with a timm trunk.
HEAD_KEYS = (("head.weight", 0), ("head.fc.weight", 0), ("visual.proj", 1), ("module.visual.proj", 1),
             ("visual.head.proj.weight", 0))


def build(name, kwargs, param, **timm_kwargs):
    """timm.create_model(name, **timm_kwargs, **kwargs); what timm refuses is a TGOError naming `param`."""
    try:
        return timm.create_model(name, **timm_kwargs, **kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise TGOError(f"{param}: timm cannot build {name} with {kwargs} ({str(e).splitlines()[0]})") from None


def load_weights(name, arch, weights, overrides, overlay, param="model"):
    """(timm model `name` holding `weights` from a local source (module docstring), the overrides it
    was built with). A directory's config.json must name `arch`; its pretrained config's
    preprocessing and its model_args fill in what `overlay` and `overrides` leave out."""
    path, config = resolve_weights(weights, param)
    if config is not None:
        if config.get("architecture", arch) != arch:
            raise TGOError(f"{param}.weights: '{weights}' holds {config['architecture']}, not {arch}; set "
                           f"{param}.name to {config['architecture']} (with its tag)")
        pretrained = config.get("pretrained_cfg", config)
        overlay = {**{k: pretrained[k] for k in PREPROCESSING if pretrained.get(k) is not None}, **overlay}
        overrides = {**config.get("model_args", {}), **overrides}
    if path.suffix == ".npz" and not _is_state_dict_npz(path):
        return _load_jax_npz(name, path, overrides, overlay, param), overrides
    return _load_state_dict(name, path, read_state_dict(path, param), overrides, overlay, param), overrides


def resolve_weights(weights, param="model"):
    """(weights file, config.json of its directory or None) for any local source."""
    text = str(weights)
    path = Path(text.removeprefix("local-dir:")).expanduser()
    if not path.exists():
        raise TGOError(f"{param}.weights: '{path}' does not exist; give a local weights file, a hub cache "
                       "directory (models--timm--NAME) or one of its snapshots, or null for random weights")
    if path.is_file():
        return path, None
    if (path / "refs" / "main").is_file():  # a hub cache repo: refs/main names the snapshot
        path = path / "snapshots" / (path / "refs" / "main").read_text().strip()
    elif (path / "snapshots").is_dir() and not (path / "config.json").exists():
        snaps = sorted((path / "snapshots").iterdir())
        if len(snaps) != 1:
            raise TGOError(f"{param}.weights: '{path}' has no refs/main and {len(snaps)} snapshots; give one "
                           "snapshot directory")
        path = snaps[0]
    config_path = path / "config.json"
    found = [path / f for f in WEIGHT_FILES if (path / f).is_file()]
    if not config_path.is_file() or not found:
        raise TGOError(f"{param}.weights: '{path}' is not a snapshot or local-dir (needs config.json and one of "
                       f"{', '.join(WEIGHT_FILES[:2])}); give its weights file instead")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TGOError(f"{param}.weights: '{config_path}' is not valid JSON ({e})") from None
    return found[0], config


def read_state_dict(path, param="model"):
    """A state dict from a file, never running code: safetensors, or torch.load(weights_only=True)
    through timm (which unwraps 'state_dict'/'model' nesting and 'module.' prefixes), or an .npz
    of named arrays."""
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: torch.from_numpy(z[k]) for k in z.files}
        with warnings.catch_warnings():  # torch warns of a pickle protocol it may not read, then refuses it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return load_state_dict(str(path), use_ema=False, weights_only=True)
    except (SafetensorError, OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        # torch.load with weights_only=True refuses any pickle that would import or call code.
        text = f"{e} {e.__cause__}"
        if "Unsupported global" in text:  # torch names the import it refused
            reason = "unpickling refused: it would import or run code"
        elif "Weights only load failed" in text:
            reason = "unpickling refused: torch.load(weights_only=True) reads tensors and plain containers only"
        else:
            reason = f"{type(e).__name__}: not a weights file"
        raise TGOError(f"{param}.weights: cannot read '{path}' as safetensors, a PyTorch state dict or an .npz "
                       f"({reason})") from None


def _is_state_dict_npz(path):
    with np.load(path, allow_pickle=False) as z:
        return any("." in k for k in z.files)  # timm names (blocks.0.attn...), not JAX paths (Transformer/...)


def _head_width(state):
    for key, axis in HEAD_KEYS:
        if key in state:
            return int(state[key].shape[axis])
    return 0


def _does_not_fit(param, path, name, detail):
    return TGOError(f"{param}.weights: '{path}' does not fit {name} with the {param} params ({detail}); set "
                    f"{param}.name and its architecture keys to those the weights were trained with (null "
                    "keeps the name's)")


def _load_state_dict(name, path, state, overrides, overlay, param):
    """Build `name` and load `state` strictly through timm's pretrained path: the model's own
    checkpoint filter converts foreign layouts and resamples position embeddings."""
    n = _head_width(state)
    try:
        model = timm.create_model(name, pretrained=True, **{**overrides, "num_classes": n},
                                  pretrained_cfg_overlay={**overlay, "state_dict": state, "num_classes": n})
    except RuntimeError as e:  # PyTorch lists every missing, unexpected or misshapen tensor
        lines = [line.strip() for line in str(e).splitlines()]
        detail = next((line for line in lines if "size mismatch" in line), None)
        detail = detail or next((line for line in lines if line.startswith(("Missing", "Unexpected"))), lines[0])
        raise _does_not_fit(param, path, name, detail.rstrip(".")[:300]) from None
    except (TypeError, ValueError, AssertionError, KeyError) as e:
        raise _does_not_fit(param, path, name, f"{type(e).__name__}: {str(e)[:200]}") from None
    model.pretrained_cfg.pop("state_dict", None)  # keep the config small: the weights live in the model
    return model


def _load_jax_npz(name, path, overrides, overlay, param):
    """A JAX/Flax .npz (the original ViT and AugReg releases) through timm's model.load_pretrained."""
    with np.load(path, allow_pickle=False) as z:
        head = next((z[k] for k in z.files if k.endswith("head/kernel")), None)
    n = int(head.shape[-1]) if head is not None else 0
    model = build(name, {**overrides, "num_classes": n}, param, pretrained_cfg_overlay=overlay)
    try:
        model.load_pretrained(str(path))
    except (KeyError, ValueError, RuntimeError, AttributeError) as e:
        raise _does_not_fit(param, path, name, f"{type(e).__name__}: {str(e)[:200]}") from None
    return model
