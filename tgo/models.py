"""timm Vision Transformers, offline: names checked, models built by name (with or without a
pretrained tag), with weights from local files or local Hugging Face hub caches (tgo.weights), the
checks that TGO can analyse them, their attention layout, their own preprocessing, and uint8
images to their input.
"""
import difflib
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before timm imports huggingface_hub: no hub requests, ever

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_model_data_config  # noqa: E402
from timm.models import split_model_name_tag  # noqa: E402

from tgo.io import TGOError  # noqa: E402
from tgo.weights import build, load_weights  # noqa: E402

# Params of the `model` group (and of a zoo entry) passed to timm.create_model as overrides.
ARCH_KEYS = ("patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio", "drop_path_rate", "img_size")


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
    `weights` from a local source (tgo.weights), or timm's random initialisation if None.
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
        model = build(name, overrides, param, pretrained_cfg_overlay=overlay)
    else:
        model, overrides = load_weights(name, arch, weights, overrides, overlay, param)
    check_vit(model, name, param)
    broken = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise TGOError(f"{param}.weights: '{weights}' has non-finite values (nan or inf) in {broken[:3]}; these "
                       "weights cannot be analysed, use a checkpoint from before training diverged")
    model.create_kwargs = {"name": name, **overrides, "num_classes": int(model.num_classes),
                           "preprocessing": input_config(model)}
    return model.eval()


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
