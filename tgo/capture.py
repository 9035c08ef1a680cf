"""Recording what every block of a timm ViT computes, for a fixed probe set of images, into the
activation store (layout: tgo.activations).

Per block b (timm's `Block`: x += ls1(attn(norm1(x))); x += ls2(mlp(norm2(x)))):
  residual[b]  the residual stream after the block (timm's `forward_intermediates`, norm=False)
  attn[b]      the attention sublayer's contribution, ls1(attn(norm1(x)))
  mlp[b]       the MLP sublayer's contribution, ls2(mlp(norm2(x)))
plus `embed`, the tokens entering block 1 (patch embedding + position embedding), and `final_norm`,
the output of the final LayerNorm.
"""
import numpy as np
import torch
from tqdm import tqdm

from tgo.activations import PER_BLOCK
from tgo.io import TGOError
from tgo.models import to_input


def layout(model):
    """Token layout of a timm ViT: prefix token count, patch grid, number of blocks, width."""
    grid = tuple(model.patch_embed.grid_size)
    return {"num_prefix_tokens": int(model.num_prefix_tokens), "grid": list(grid),
            "num_tokens": int(model.num_prefix_tokens + grid[0] * grid[1]),
            "n_blocks": len(model.blocks), "dim": int(model.embed_dim)}


@torch.no_grad()
def capture(model, images, batch_size, out_dir, desc="capture"):
    """Run uint8 images (N×H×W×3) through `model`; write one .npy per site into out_dir.

    Returns the token layout (see `layout`).
    """
    for i, blk in enumerate(model.blocks):
        if not (hasattr(blk, "ls1") and hasattr(blk, "ls2")):
            raise TGOError(f"model: block {i} is {type(blk).__name__}, not timm's pre-norm Block; "
                           "sublayer capture needs a standard vit_* model")
    model.eval()
    info = layout(model)
    n, n_blocks, t, d = len(images), info["n_blocks"], info["num_tokens"], info["dim"]
    shapes = {"embed": (n, t, d), "final_norm": (n, t, d), **{s: (n_blocks, n, t, d) for s in PER_BLOCK}}
    arrays = {s: np.lib.format.open_memmap(out_dir / f"{s}.npy", mode="w+", dtype=np.float16,
                                           shape=shape) for s, shape in shapes.items()}

    captured = {}
    hooks = [model.norm_pre.register_forward_hook(lambda m, i, o: captured.__setitem__("embed", o))]
    for b, blk in enumerate(model.blocks):
        hooks.append(blk.ls1.register_forward_hook(lambda m, i, o, b=b: captured.__setitem__(("attn", b), o)))
        hooks.append(blk.ls2.register_forward_hook(lambda m, i, o, b=b: captured.__setitem__(("mlp", b), o)))
    try:
        for start in tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False):
            sl = slice(start, start + batch_size)
            x = to_input(torch.from_numpy(np.array(images[sl])), model.patch_embed.img_size[0])
            final, inter = model.forward_intermediates(x, indices=n_blocks, norm=False, output_fmt="NLC",
                                                       return_prefix_tokens=True)
            arrays["final_norm"][sl] = final.numpy()
            arrays["embed"][sl] = captured["embed"].numpy()
            for b, (patches, prefix) in enumerate(inter):
                arrays["residual"][b, sl] = torch.cat([prefix, patches], dim=1).numpy()
                arrays["attn"][b, sl] = captured[("attn", b)].numpy()
                arrays["mlp"][b, sl] = captured[("mlp", b)].numpy()
    finally:
        for h in hooks:
            h.remove()
    for a in arrays.values():
        a.flush()
    return info


def probe_indices(n_val, probe_size, seed):
    """The fixed probe set: `probe_size` distinct val indices drawn by `seed`, sorted."""
    if probe_size > n_val:
        raise TGOError(f"extract.probe_size={probe_size} exceeds the val split ({n_val} images); "
                       f"set it to at most {n_val}")
    return np.sort(np.random.default_rng(seed).choice(n_val, size=probe_size, replace=False))
