"""Recording what every block of a timm ViT computes, for a fixed probe set of images, into the
activation store (layout: tgo.activations).

Per block b (timm's `Block`: x += drop_path1(ls1(attn(norm1(x)))); x += drop_path2(ls2(mlp(norm2(x))));
EVA's blocks add the same two contributions, scaled by gamma_1 and gamma_2):
  residual[b]  the residual stream after the block (timm's `forward_intermediates`, norm=False)
  attn[b]      the attention sublayer's contribution to the residual stream (drop_path1's output)
  mlp[b]       the MLP sublayer's contribution (drop_path2's output)
plus `embed`, the tokens entering block 1 (patch + position embedding, prefix tokens, norm_pre),
and `final_norm`, the output of the final norm. A model whose head does not read the CLS token
alone (average or attention pooling, DeiT's distilled head) also gets `pooled`: the head's input
(`forward_head(tokens, pre_logits=True)`) computed from the tokens of every site.
"""
import os

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tgo.activations import PER_BLOCK, sample_sets
from tgo.io import TGOError
from tgo.loader import device_batches
from tgo.models import attention_layout, preprocess

__all__ = ["prefix_token_names", "head_input", "layout", "capture", "probe_indices", "sample_sets"]


def prefix_token_names(model):
    """Names of the prefix tokens in token order: `cls`, `dist` (DeiT's distillation token),
    `reg_1`..`reg_k` (registers): the order timm's `_pos_embed` concatenates them in."""
    names = ["cls"] if getattr(model, "cls_token", None) is not None else []
    if getattr(model, "dist_token", None) is not None:
        names.append("dist")
    reg = getattr(model, "reg_token", None)
    names += [f"reg_{i + 1}" for i in range(reg.shape[1] if reg is not None else 0)]
    if len(names) != model.num_prefix_tokens:
        raise TGOError(f"model: {type(model).__name__} has {model.num_prefix_tokens} prefix tokens but TGO "
                       f"recognises {names}; its token layout is unknown")
    return names


def head_input(model, prefix):
    """What the classifier head reads, in words, or None when it is the CLS token itself."""
    fc_norm = "" if isinstance(getattr(model, "fc_norm", None), (nn.Identity, type(None))) else ", then fc_norm"
    if "dist" in prefix:
        return "mean of the CLS and distillation tokens (DeiT's distilled head)"
    if getattr(model, "attn_pool", None) is not None:
        return "attention pool (MAP head) of all tokens" + fc_norm
    pool = model.global_pool
    if pool == "token":
        return None if prefix[:1] == ["cls"] and not fc_norm else f"token 0 ({(prefix or ['a patch'])[0]})" + fc_norm
    kind = {"avg": "average", "max": "maximum", "avgmax": "mean of the average and maximum"}.get(pool, pool)
    return f"{kind} of the patch tokens" + fc_norm


def layout(model):
    """Token layout of a timm ViT: its prefix tokens by name (in token order), the patch grid,
    number of blocks, width, what its head reads when that is not the CLS token alone, and its
    attention's layout (tgo.models.attention_layout)."""
    grid = tuple(int(g) for g in model.patch_embed.grid_size)
    prefix = prefix_token_names(model)
    return {"num_prefix_tokens": len(prefix), "prefix_tokens": prefix, "grid": list(grid),
            "num_tokens": len(prefix) + grid[0] * grid[1], "n_blocks": len(model.blocks),
            "dim": int(model.embed_dim), "head_input": head_input(model, prefix),
            "attention": attention_layout(model)}


@torch.no_grad()
def capture(model, images, batch_size, out_dir, input_cfg, desc="capture", device=None, precision="fp32"):
    """Run uint8 images (N×H×W×3) through `model` on `device` (default: the CPU), preprocessed per
    `input_cfg` (tgo.models.input_config), and write one .npy per site into out_dir. The next batch
    is copied to the device while this one runs (tgo.loader.device_batches). precision "fp32" is
    float32 throughout (TF32 off on CUDA); "bf16" runs the forward pass under bfloat16 autocast.

    Returns the token layout (see `layout`).
    """
    device = torch.device("cpu") if device is None else device
    model.eval().to(device)
    info = layout(model)
    n, n_blocks, t, d = len(images), info["n_blocks"], info["num_tokens"], info["dim"]
    shapes = {"embed": (n, t, d), "final_norm": (n, t, d), **{s: (n_blocks, n, t, d) for s in PER_BLOCK}}
    if info["head_input"]:
        shapes["pooled"] = (n_blocks + 2, n, d)  # embed, every block, final norm
    sites = {s: _SiteFile(out_dir / f"{s}.npy", shape) for s, shape in shapes.items()}
    host = lambda t: t.float().cpu().numpy()  # noqa: E731  (float32 on the host; stored as float16)
    batch = {}  # the batch in flight: its first image, for the hooks

    # Each sublayer's output goes to its file as soon as the block has run, rather than every block's
    # being held until the batch is done (at ViT-S/16's shape 24 x 75 MB of float32 a batch of 250).
    def write(site, b):
        return lambda m, i, o: sites[site].write(b, batch["start"], host(o))

    embed = []
    hooks = [model.norm_pre.register_forward_hook(lambda m, i, o: embed.append(o))]
    for b, blk in enumerate(model.blocks):
        hooks.append(blk.drop_path1.register_forward_hook(write("attn", b)))
        hooks.append(blk.drop_path2.register_forward_hook(write("mlp", b)))
    batches = [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            for idx, (xb, _) in zip(tqdm(batches, desc=desc, unit="batch", leave=False),
                                    device_batches(images, None, batches, device)):
                batch["start"] = start = int(idx[0])
                x = preprocess(xb, input_cfg)
                embed.clear()
                final, inter = model.forward_intermediates(x, indices=n_blocks, norm=False, output_fmt="NLC",
                                                           return_prefix_tokens=info["num_prefix_tokens"] > 0)
                residual = [torch.cat([y[1], y[0]], dim=1) if isinstance(y, tuple) else y for y in inter]
                sites["final_norm"].write(None, start, host(final))
                sites["embed"].write(None, start, host(embed[0]))
                for b, tokens in enumerate(residual):
                    sites["residual"].write(b, start, host(tokens))
                if "pooled" in sites:
                    for i, tokens in enumerate([embed[0], *residual, final]):
                        sites["pooled"].write(i, start, host(model.forward_head(tokens, pre_logits=True)))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        for h in hooks:
            h.remove()
        for f in sites.values():
            f.close()
    return info


class _SiteFile:
    """One site's float16 .npy, written a batch of images at a time with os.pwrite: the pages go to
    the page cache, not into this process's resident memory as a written memmap's would (5.8 GB at
    ViT-S/16's shape with 1,000 probe images)."""

    def __init__(self, path, shape):
        empty = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)  # header, full size
        self.offset, self.shape = empty.offset, shape
        del empty
        self.path, self.fd = path, os.open(path, os.O_WRONLY)

    def write(self, index, start, values):
        """values into [index, start:start + len(values)] (index None: [start:...], a site without blocks)."""
        lead = 0 if index is None else index * self.shape[1]
        row = np.prod(self.shape[1 if index is None else 2:], dtype=np.int64) * 2
        data = np.ascontiguousarray(values, dtype=np.float16)
        if os.pwrite(self.fd, data.data, self.offset + (lead + start) * row) != data.nbytes:
            raise OSError(f"short write to {self.path}: is the disk full?")

    def close(self):
        os.close(self.fd)


def probe_indices(n_val, probe_size, seed):
    """The fixed probe set: `probe_size` distinct val indices drawn by `seed`, sorted; None: every
    val image."""
    if probe_size is None:
        return np.arange(n_val)
    if probe_size > n_val:
        raise TGOError(f"extract.probe_size={probe_size} exceeds the val split ({n_val} images); "
                       f"set it to at most {n_val}")
    return np.sort(np.random.default_rng(seed).choice(n_val, size=probe_size, replace=False))
