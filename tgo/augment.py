"""Batched augmentation on the training device, for uint8 NHWC batches: `light` (flip and shift)
and the DeiT recipe; `training_batch` turns a batch into the network's input per train.augment.

No per-image work on the host: random draws are made on the CPU from the epoch's generator (for a
whole global batch, so that a rank's share of the rows is augmented as a single process would) and
applied to the batch where it lives.

- random resized crop (scale, log-uniform aspect ratio; torchvision's 10 tries, then the whole
  image), horizontal flip and RandAugment's geometric ops, composed into one affine map per image
  and resampled in one bilinear ``F.grid_sample``;
- RandAugment (Cubuk et al. 2020) as in timm's ``rand-m9-mstd0.5``: ``num_ops`` ops per image drawn
  uniformly, magnitude N(m, std) clipped to [0, 10], random sign. A documented subset of timm's 15
  ops: Rotate, ShearX, ShearY, TranslateX, TranslateY (in the affine map) and AutoContrast,
  Brightness, Color, Contrast, Sharpness, Posterize, Solarize (on the batch); Equalize, Invert and
  SolarizeAdd are left out. Geometric ops act before colour ops.
- mixup / cutmix (timm.data.Mixup) and random erasing (timm.data.RandomErasing) run on the device
  batch after normalisation; they draw from numpy's and Python's global generators, which the
  training loop seeds per epoch.
"""
import math

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from tgo.models import to_input

GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
COLOUR = ("autocontrast", "brightness", "color", "contrast", "sharpness", "posterize", "solarize")
OPS = GEOMETRIC + COLOUR


def rrc_boxes(n, gen, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), tries=10):
    """Random-resized-crop boxes as fractions of a square image: centre (cx, cy) in [0, 1] and size
    (w, h) in (0, 1], each (n,). torchvision's rule: area ~ U(scale), log ratio ~ U(log ratio); the
    first of `tries` draws that fits, else the whole image."""
    area = torch.empty(n, tries).uniform_(*scale, generator=gen)
    log_r = torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    w, h = torch.sqrt(area * log_r.exp()), torch.sqrt(area / log_r.exp())
    fits = (w <= 1) & (h <= 1)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
    pick = first.clamp(min=0).view(n, 1)
    w = torch.where(first >= 0, w.gather(1, pick).squeeze(1), torch.ones(n))
    h = torch.where(first >= 0, h.gather(1, pick).squeeze(1), torch.ones(n))
    u = torch.rand(n, 2, generator=gen)
    return w / 2 + u[:, 0] * (1 - w), h / 2 + u[:, 1] * (1 - h), w, h


def draw(n, gen, cfg):
    """All random draws of the recipe for a batch of n images (CPU tensors)."""
    cx, cy, w, h = rrc_boxes(n, gen, tuple(cfg["rrc_scale"]))
    flip = torch.rand(n, generator=gen) < cfg["hflip"]
    ops = torch.randint(0, len(OPS), (n, cfg["randaug_ops"]), generator=gen)
    mag = (cfg["randaug_magnitude"] + cfg["randaug_std"] * torch.randn(n, len(OPS), generator=gen)).clamp(0, 10) / 10
    sign = torch.where(torch.rand(n, len(OPS), generator=gen) < 0.5, -1.0, 1.0)
    chosen = torch.zeros(n, len(OPS), dtype=torch.bool).scatter_(1, ops, True)
    return {"box": torch.stack([cx, cy, w, h], 1), "flip": flip, "chosen": chosen, "mag": mag, "sign": sign}


def _affine(d):
    """(n, 2, 3) maps from output to input coordinates (align_corners=False, [-1, 1] units)."""
    n = d["box"].shape[0]
    cx, cy, w, h = d["box"].unbind(1)
    crop = torch.zeros(n, 3, 3)
    crop[:, 0, 0] = w * torch.where(d["flip"], -1.0, 1.0)
    crop[:, 1, 1] = h
    crop[:, 0, 2], crop[:, 1, 2], crop[:, 2, 2] = 2 * cx - 1, 2 * cy - 1, 1
    geo = torch.eye(3).repeat(n, 1, 1)
    on = d["chosen"].float()
    strength = d["mag"] * d["sign"] * on  # 0 where the op was not drawn
    angle = torch.deg2rad(30 * strength[:, OPS.index("rotate")])
    rot = torch.eye(3).repeat(n, 1, 1)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
    geo[:, 0, 1] = 0.3 * strength[:, OPS.index("shear_x")]
    geo[:, 1, 0] = 0.3 * strength[:, OPS.index("shear_y")]
    geo[:, 0, 2] = 2 * 0.45 * strength[:, OPS.index("translate_x")]
    geo[:, 1, 2] = 2 * 0.45 * strength[:, OPS.index("translate_y")]
    return (crop @ rot @ geo)[:, :2]


def _gray(x):
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _blend(a, b, factor):
    """b + factor * (a - b) per image, clamped to [0, 1] (PIL's ImageEnhance)."""
    return (b + factor.view(-1, 1, 1, 1) * (a - b)).clamp(0, 1)


def _colour(x, name, m):
    """One colour op on the whole float [0, 1] NCHW batch; m (n,) signed strength in [-1, 1]."""
    if name == "autocontrast":
        lo = x.amin((2, 3), keepdim=True)
        hi = x.amax((2, 3), keepdim=True)
        return torch.where(hi > lo, (x - lo) / (hi - lo).clamp(min=1e-6), x)
    if name == "brightness":
        return _blend(x, torch.zeros_like(x), 1 + 0.9 * m)
    if name == "color":
        return _blend(x, _gray(x).expand_as(x), 1 + 0.9 * m)
    if name == "contrast":
        return _blend(x, _gray(x).mean((2, 3), keepdim=True).expand_as(x), 1 + 0.9 * m)
    if name == "sharpness":
        kernel = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=x.dtype, device=x.device) / 13
        smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3)
        return _blend(x, smooth, 1 + 0.9 * m)
    if name == "posterize":  # keep 8 - 4|m| bits (4..8)
        step = torch.pow(2.0, (4 * m.abs()).floor()).view(-1, 1, 1, 1)
        return torch.floor(x * 255 / step) * step / 255
    if name == "solarize":  # invert above a threshold that falls from 1 to 0 with |m|
        return torch.where(x >= ((1 - m.abs()) * 256 / 255).view(-1, 1, 1, 1), 1 - x, x)
    raise ValueError(name)


def deit_augment(x, d, out_size):
    """uint8 NHWC batch (on its device) and the draws for it -> normalised float NCHW of out_size."""
    dev = x.device
    x = x.permute(0, 3, 1, 2).float().div_(255)
    grid = F.affine_grid(_affine(d).to(dev), (x.shape[0], 3, out_size, out_size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    strength = (d["mag"] * d["sign"]).to(dev)
    chosen = d["chosen"].to(dev)
    for name in COLOUR:
        k = OPS.index(name)
        x = torch.where(chosen[:, k].view(-1, 1, 1, 1), _colour(x, name, strength[:, k]), x)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=dev).view(1, 3, 1, 1)
    return (x - mean) / std


def slice_draws(d, part):
    """The draws of rows `part` (a slice) of a batch."""
    return {k: v[part] for k, v in d.items()}


def flip_shift(x, gen, pad, n_batch=None, start=0):
    """The light recipe: batched random horizontal flip and random translation (reflect-pad, crop)
    of uint8 NHWC.

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


def training_batch(xb, y, gen, cfg, size, n_batch, start, mixup=None, erase=None):
    """A uint8 batch on the device -> (network input, targets) per the train.augment recipe. Random
    draws are made for the whole global batch of n_batch rows, of which xb holds start:start+len(xb)."""
    if cfg["augment"] == "deit":
        x = deit_augment(xb, slice_draws(draw(n_batch, gen, cfg), slice(start, start + len(xb))), size)
    else:
        x = to_input(flip_shift(xb, gen, cfg["augment_pad"], n_batch, start), size)
    if mixup:
        x, y = mixup(x, y)
    if erase:
        x = erase(x)
    return x, y
