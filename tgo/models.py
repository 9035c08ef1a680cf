"""Building timm Vision Transformers from params, loading external weights, and feeding them uint8
images."""
from pathlib import Path

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import load_state_dict
from timm.models.vision_transformer import checkpoint_filter_fn

from tgo.io import TGOError

# Params of the `model` group that are passed to timm.create_model as keyword overrides.
ARCH_KEYS = ("patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio", "drop_path_rate")


def model_kwargs(model_cfg, num_classes, image_size):
    """Validated keyword arguments for timm.create_model (no network: pretrained=False). The input
    size is model.img_size, or the stored image size when that is null."""
    name = model_cfg["name"]
    if name not in timm.list_models():
        raise TGOError(f"model.name: unknown timm model '{name}'; pick one of "
                       "timm.list_models('vit_*'), e.g. vit_small_patch16_224")
    size = model_cfg.get("img_size") or image_size
    if size > image_size:
        raise TGOError(f"model.img_size={size} exceeds the stored image size {image_size} "
                       "(prepare.image_size); lower it or prepare larger images")
    patch = model_cfg.get("patch_size")
    if patch is not None and size % patch:
        raise TGOError(f"model.patch_size={patch} does not divide the image size {size} "
                       "(model.img_size or prepare.image_size); choose a divisor")
    kwargs = {k: model_cfg[k] for k in ARCH_KEYS if model_cfg.get(k) is not None}
    return {"model_name": name, "pretrained": False, "num_classes": num_classes,
            "img_size": size, **kwargs}


def build_model(kwargs):
    try:
        model = timm.create_model(**kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise TGOError(f"model: timm cannot build {kwargs['model_name']} with these params ({e})") from None
    if not hasattr(model, "blocks") or not hasattr(model.blocks[0], "attn"):
        raise TGOError(f"model.name: '{kwargs['model_name']}' is not a ViT with .blocks; use a vit_* model")
    return model


def load_external_weights(kwargs, path):
    """(model, kwargs) for a local weights file: safetensors or a PyTorch state dict (read with
    weights_only=True by timm's load_state_dict). The classifier width comes from the file's head
    (0, no head, if it has none); timm's ViT filter adapts the position embedding to the image size.
    """
    path = Path(path)
    if not path.is_file():
        raise TGOError(f"train.weights: file '{path}' does not exist; give a local .safetensors file or "
                       "PyTorch state dict (or null to train)")
    try:
        state = load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as e:  # unpickling refused, not a weights file, ...
        raise TGOError(f"train.weights: cannot read '{path}' as safetensors or a PyTorch state dict "
                       f"({type(e).__name__})") from None
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise TGOError(f"train.weights: '{path}' has non-finite values (nan or inf) in {broken[:3]}; these "
                       "weights cannot be analysed, use a checkpoint from before training diverged")
    head = state.get("head.weight")
    kwargs = {**kwargs, "num_classes": int(head.shape[0]) if head is not None else 0}
    model = build_model(kwargs)
    fit = "set model.name and its architecture keys to those the weights were trained with"
    try:
        missing, unexpected = model.load_state_dict(checkpoint_filter_fn(state, model), strict=False)
    except RuntimeError as e:  # tensors of another shape: PyTorch lists every one
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e))
        raise TGOError(f"train.weights: '{path}' does not fit {kwargs['model_name']} with the model params "
                       f"({first.rstrip('.')}); {fit}") from None
    if missing or unexpected:
        raise TGOError(f"train.weights: '{path}' does not fit {kwargs['model_name']} with the model params "
                       f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}); {fit}")
    return model, kwargs


def to_input(images_uint8, size=None):
    """uint8 N×H×W×3 tensor -> normalised float N×3×size×size, the network's input: the centre
    size×size crop (DeiT's evaluation crop when images are stored larger than the model's input)."""
    h, w = images_uint8.shape[1:3]
    if size and (h, w) != (size, size):
        top, left = (h - size) // 2, (w - size) // 2
        images_uint8 = images_uint8[:, top:top + size, left:left + size]
    x = images_uint8.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
