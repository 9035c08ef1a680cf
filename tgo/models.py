"""timm Vision Transformers, offline: built by name (with or without a pretrained tag), with weights
from local files or local Hugging Face hub caches, their own preprocessing, and uint8 images to
their input.

Weights sources (`create_model(name, weights=...)`), never the network:
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
import difflib
import json
import math
import os
import pickle
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before timm imports huggingface_hub: no hub requests, ever

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors import SafetensorError  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_model_data_config  # noqa: E402
from timm.models import load_state_dict, split_model_name_tag  # noqa: E402

from tgo.io import TGOError  # noqa: E402

# Params of the `model` group (and of a zoo entry) passed to timm.create_model as overrides.
ARCH_KEYS = ("patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio", "drop_path_rate", "img_size")
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


def model_kwargs(model_cfg, num_classes, image_size):
    """`create_model` keyword arguments of a model trained here: the name, the model group's
    architecture overrides, one output per class, the input size (model.img_size, or the stored
    image size when that is null) and the training recipe's preprocessing (`recipe_config`)."""
    size = model_cfg["img_size"] or image_size
    if size > image_size:
        raise TGOError(f"model.img_size={size} exceeds the stored image size {image_size} "
                       "(prepare.image_size); lower it or prepare larger images")
    patch = model_cfg["patch_size"]
    if patch is not None and size % patch:
        raise TGOError(f"model.patch_size={patch} does not divide the image size {size} "
                       "(model.img_size or prepare.image_size); choose a divisor")
    arch = {k: model_cfg[k] for k in ARCH_KEYS if model_cfg[k] is not None}
    return {"name": model_cfg["name"], **arch, "num_classes": num_classes, "img_size": size,
            "preprocessing": recipe_config(size, image_size)}


def check_name(name, param="model"):
    """The (architecture, tag) of a timm model name; an unknown one is an error naming the closest."""
    arch, tag = split_model_name_tag(name)
    if arch not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models() + timm.list_pretrained(), n=3, cutoff=0.5)
        raise TGOError(f"{param}.name: unknown timm model '{name}'; closest: {', '.join(close) or 'none'} "
                       "(all: timm.list_models('vit_*'), with tags: timm.list_pretrained('vit_*'))")
    if tag and name not in timm.list_pretrained(f"{arch}.*"):
        tags = timm.list_pretrained(f"{arch}.*")
        close = difflib.get_close_matches(name, tags, n=3, cutoff=0.5) or tags[:3]
        raise TGOError(f"{param}.name: '{arch}' has no pretrained tag '{tag}'; "
                       + (f"closest: {', '.join(close)}" if close else "it has no pretrained tags; drop the tag"))
    return arch, tag


def create_model(name, weights=None, *, preprocessing=None, param="model", **overrides):
    """A timm ViT in eval mode, built offline: `name` with or without a pretrained tag (the tag
    selects timm's pretrained config: preprocessing, classes), `overrides` as keyword arguments of
    timm.create_model (None values are dropped; architecture keys override the name's), and
    `weights` from a local source (module docstring), or timm's random initialisation if None.
    `preprocessing` (keys of `input_config`) replaces what the pretrained config says, for a model
    trained here with its own recipe.

    With weights, the classifier's width comes from the weights (0 if they have none). The model's
    `create_kwargs` rebuild it without the weights: create_model(**model.create_kwargs). Every
    expected failure is a TGOError naming `param` (the params group: `model` or `zoo.<id>`).
    """
    arch, _ = check_name(name, param)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    overlay = dict(preprocessing or {})
    if weights is None:
        model = _build(name, overrides, param, pretrained_cfg_overlay=overlay)
    else:
        path, config = resolve_weights(weights, param)
        if config is not None:
            if config.get("architecture", arch) != arch:
                raise TGOError(f"{param}.weights: '{weights}' holds {config['architecture']}, not {arch}; set "
                               f"{param}.name to {config['architecture']} (with its tag)")
            pretrained = config.get("pretrained_cfg", config)
            overlay = {**{k: pretrained[k] for k in PREPROCESSING if pretrained.get(k) is not None}, **overlay}
            overrides = {**config.get("model_args", {}), **overrides}
        if path.suffix == ".npz" and not _is_state_dict_npz(path):
            model = _load_jax_npz(name, path, overrides, overlay, param)
        else:
            model = _load_state_dict(name, path, read_state_dict(path, param), overrides, overlay, param)
    check_vit(model, name, param)
    broken = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise TGOError(f"{param}.weights: '{weights}' has non-finite values (nan or inf) in {broken[:3]}; these "
                       "weights cannot be analysed, use a checkpoint from before training diverged")
    model.create_kwargs = {"name": name, **overrides, "num_classes": int(model.num_classes),
                           "preprocessing": input_config(model)}
    return model.eval()


def _build(name, kwargs, param, **timm_kwargs):
    try:
        return timm.create_model(name, **timm_kwargs, **kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise TGOError(f"{param}: timm cannot build {name} with {kwargs} ({str(e).splitlines()[0]})") from None


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
    model = _build(name, {**overrides, "num_classes": n}, param, pretrained_cfg_overlay=overlay)
    try:
        model.load_pretrained(str(path))
    except (KeyError, ValueError, RuntimeError, AttributeError) as e:
        raise _does_not_fit(param, path, name, f"{type(e).__name__}: {str(e)[:200]}") from None
    return model


def check_vit(model, name, param="model"):
    """Refuse what TGO cannot analyse: it needs timm's ViT layout (patch embedding, prefix tokens,
    `forward_intermediates`, blocks with attention and MLP sublayers added to the residual stream
    through drop_path1/drop_path2)."""
    blocks = getattr(model, "blocks", None)
    ok = (hasattr(model, "forward_intermediates") and hasattr(model, "num_prefix_tokens")
          and hasattr(getattr(model, "patch_embed", None), "grid_size") and blocks is not None and len(blocks) > 0
          and all(hasattr(b, a) for b in blocks for a in ("attn", "mlp", "drop_path1", "drop_path2")))
    if not ok:
        raise TGOError(f"{param}.name: '{name}' is a {type(model).__name__}, not a Vision Transformer TGO can "
                       "analyse (timm's vit_*, deit_*, eva* families); pick one of timm.list_models('vit_*')")
    size, patch = tuple(model.patch_embed.img_size), tuple(model.patch_embed.patch_size)
    if any(s % p for s, p in zip(size, patch)):
        raise TGOError(f"{param}.patch_size={patch[0]} does not divide the input size {size[0]} "
                       f"({param}.img_size or the name's); choose a divisor")


def attention_is_bilinear(model):
    """None when every block's attention logits are the bilinear form x_i W_Q W_K^T x_j^T / sqrt(d_head)
    (plus bias terms) of its LayerNorm'd input, which tgo.geometry.qk decomposes and recomputes:
    timm's pre-norm `Block` with its `Attention`. Otherwise the reason, in words."""
    from timm.layers import Attention
    from timm.models.vision_transformer import Block

    if getattr(model, "rope", None) is not None:
        return "it rotates queries and keys by position (RoPE), so the logits are not x W_Q W_K^T x^T"
    for blk in model.blocks:
        if type(blk) is not Block or type(blk.attn) is not Attention:
            return f"its blocks are {type(blk).__name__} with {type(blk.attn).__name__}, not timm's pre-norm Block"
        if not (isinstance(blk.attn.q_norm, torch.nn.Identity) and isinstance(blk.attn.k_norm, torch.nn.Identity)):
            return "it normalises queries and keys (qk-norm), so the logits are not x W_Q W_K^T x^T"
        if not isinstance(blk.norm1, torch.nn.LayerNorm):
            return f"the norm before attention is {type(blk.norm1).__name__}, not a LayerNorm"
        if not math.isclose(blk.attn.scale, blk.attn.head_dim ** -0.5):
            return f"its attention scale is {blk.attn.scale:g}, not 1/sqrt(d_head)"
    return None


def attention_layout(model):
    """What the QK analysis (stages/qk.py) needs of the attention, recorded with the activations so
    that it never builds the model: `not_bilinear`, the reason its logits are not x W_Q W_K^T x^T
    (attention_is_bilinear), or None with the number of heads and the pre-attention LayerNorm's eps."""
    reason = attention_is_bilinear(model)
    if reason:
        return {"not_bilinear": reason}
    return {"not_bilinear": None, "num_heads": int(model.blocks[0].attn.num_heads),
            "norm_eps": float(model.blocks[0].norm1.eps)}


def input_config(model):
    """The preprocessing the model expects: timm's data config (mean, std, crop_pct, crop_mode,
    interpolation) from its pretrained config, with the input size the model was built for."""
    cfg = resolve_model_data_config(model)
    return {"input_size": [3, *map(int, model.patch_embed.img_size)], "mean": [float(v) for v in cfg["mean"]],
            "std": [float(v) for v in cfg["std"]], "crop_pct": float(cfg["crop_pct"]),
            "crop_mode": cfg.get("crop_mode", "center"), "interpolation": cfg["interpolation"]}


def recipe_config(img_size, stored_size):
    """The preprocessing of a model trained here: the centre img_size crop of the stored images,
    normalised with the ImageNet mean and std (what training and evaluation feed it)."""
    return {"input_size": [3, img_size, img_size], "mean": list(IMAGENET_DEFAULT_MEAN),
            "std": list(IMAGENET_DEFAULT_STD), "crop_pct": img_size / stored_size, "crop_mode": "center",
            "interpolation": "bicubic"}


def to_input(images_uint8, size=None, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD):
    """uint8 N×H×W×3 tensor -> normalised float N×3×size×size, the network's input: the centre
    size×size crop (DeiT's evaluation crop when images are stored larger than the model's input)."""
    h, w = images_uint8.shape[1:3]
    if size and (h, w) != (size, size):
        top, left = (h - size) // 2, (w - size) // 2
        images_uint8 = images_uint8[:, top:top + size, left:left + size]
    x = images_uint8.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def resize_target(cfg):
    """Side the stored (square) images are resized to before the centre crop: timm's evaluation
    transform, floor(input / crop_pct) (the small epsilon keeps e.g. 224 / (224/256) at 256)."""
    return math.floor(cfg["input_size"][-1] / cfg["crop_pct"] + 1e-6)


def preprocess(images_uint8, cfg):
    """uint8 N×H×W×3 (square, centre crops of the original images) -> the model's input per `cfg`
    (`input_config`): resized to `resize_target(cfg)` with the model's interpolation (antialiased)
    when that differs from the stored size, then the centre input-size crop, normalised with the
    model's mean and std. Equals timm's evaluation transform up to the extra resampling of the
    stored crop."""
    side = resize_target(cfg)
    if images_uint8.shape[1] != side:
        x = images_uint8.permute(0, 3, 1, 2).float()
        mode = resize_mode(cfg)
        if mode == "nearest-exact":
            x = F.interpolate(x, size=(side, side), mode=mode)
        else:
            x = F.interpolate(x, size=(side, side), mode=mode, antialias=True, align_corners=False)
        images_uint8 = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return to_input(images_uint8, cfg["input_size"][-1], cfg["mean"], cfg["std"])


def resize_mode(cfg):
    """The torch interpolation for the model's: bilinear, bicubic, nearest; PIL's other filters
    (lanczos, box, hamming) have no torch counterpart and are approximated by bicubic."""
    return {"bilinear": "bilinear", "nearest": "nearest-exact"}.get(cfg["interpolation"], "bicubic")
