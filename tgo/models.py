"""Building timm Vision Transformers from params, and feeding them uint8 images."""
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from tgo.io import TGOError

# Params of the `model` group that are passed to timm.create_model as keyword overrides.
ARCH_KEYS = ("patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio", "drop_path_rate")


def model_kwargs(model_cfg, num_classes, image_size):
    """Validated keyword arguments for timm.create_model (no network: pretrained=False)."""
    name = model_cfg["name"]
    if name not in timm.list_models():
        raise TGOError(f"model.name: unknown timm model '{name}'; pick one of "
                       "timm.list_models('vit_*'), e.g. vit_small_patch16_224")
    patch = model_cfg.get("patch_size")
    if patch is not None and image_size % patch:
        raise TGOError(f"model.patch_size={patch} does not divide the image size {image_size} "
                       "(prepare.image_size); choose a divisor")
    kwargs = {k: model_cfg[k] for k in ARCH_KEYS if model_cfg.get(k) is not None}
    return {"model_name": name, "pretrained": False, "num_classes": num_classes,
            "img_size": image_size, **kwargs}


def build_model(kwargs):
    try:
        model = timm.create_model(**kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise TGOError(f"model: timm cannot build {kwargs['model_name']} with these params ({e})") from None
    if not hasattr(model, "blocks") or not hasattr(model.blocks[0], "attn"):
        raise TGOError(f"model.name: '{kwargs['model_name']}' is not a ViT with .blocks; use a vit_* model")
    return model


def to_input(images_uint8):
    """uint8 N×H×W×3 tensor -> normalised float N×3×H×W, the network's input."""
    x = images_uint8.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
