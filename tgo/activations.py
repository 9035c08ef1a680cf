"""The activation store (data/activations), written by extract and read by every analysis stage.

  data/activations/epoch_XXX/      one directory per checkpoint
    meta.json                      epoch, probe indices, token layout (num_prefix_tokens, grid), n_blocks, dim
    labels.npy                     the probe images' labels
    embed.npy                      (N, tokens, D) tokens entering block 1
    residual.npy, attn.npy, mlp.npy  (blocks, N, tokens, D) per block: its output, its attention and
                                   MLP sublayer contributions
    final_norm.npy                 (N, tokens, D) output of the final LayerNorm

Arrays are float16 .npy files, read memory-mapped. Token layout: prefix tokens (CLS) first, then
the patches in row-major order on the patch grid.

The layer axis is called `depth` everywhere: depth 0 is the embedding, depth b (1..B) block b's
output (or, for a sublayer, block b itself) and depth B+1 the final norm. Its name, the `site`,
is "embed", "block_<b>" or "final_norm" (`site_name`); metrics JSON files key blocks by it.
"""
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tgo.io import TGOError, read_json

ACTIVATIONS = Path("data/activations")
PER_BLOCK = ("residual", "attn", "mlp")
SAMPLE_SETS = ("cls", "patches", "patch_mean")


def checkpoint_dir(epoch, root=ACTIVATIONS):
    return Path(root) / f"epoch_{epoch:03d}"


def site_name(depth, n_blocks):
    """The name of a depth along the residual stream: embed, block_<b>, final_norm."""
    if depth == 0:
        return "embed"
    return "final_norm" if depth == n_blocks + 1 else f"block_{depth}"


def checkpoints(root=ACTIVATIONS):
    """[(activation directory, its meta.json)] of every checkpoint, in epoch order; every array is
    opened once (memory-mapped, so nothing is read) to stop on a truncated file before any work."""
    dirs = sorted(p for p in Path(root).glob("epoch_*") if (p / "meta.json").exists())
    if not dirs:
        raise TGOError(f"{root}: no activations; run the extract stage first (dvc repro extract)")
    for d in dirs:
        for npy in sorted(d.glob("*.npy")):
            load(d, npy.stem)
    return [(d, read_json(d / "meta.json")) for d in dirs]


def each_checkpoint(found):
    """The per-checkpoint loop of an analysis stage over `checkpoints()`, with a progress bar."""
    return tqdm(found, desc="checkpoints", unit="ckpt")


def load(act_dir, name):
    """One stored array, memory-mapped (float16)."""
    path = Path(act_dir) / f"{name}.npy"
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:  # a truncated file: "mmap length is greater than file size"
        raise TGOError(f"{path}: unreadable activations ({e}); extract them again with "
                       "dvc repro -f -s extract") from None


def residual_sites(act_dir):
    """(site, depth, memmap N×T×D) along the residual stream: the embedding (depth 0), each block's
    output (1..B), the final norm (B+1)."""
    residual = load(act_dir, "residual")
    n_blocks = residual.shape[0]
    yield site_name(0, n_blocks), 0, load(act_dir, "embed")
    for b in range(1, n_blocks + 1):
        yield site_name(b, n_blocks), b, residual[b - 1]
    yield site_name(n_blocks + 1, n_blocks), n_blocks + 1, load(act_dir, "final_norm")


def sample_sets(tokens, num_prefix_tokens):
    """The three sample sets of one site's tokens (N×T×D): the CLS token (N×D), patch tokens
    pooled over images and positions (N·P×D), and patch tokens averaged per image (N×D)."""
    patches = tokens[:, num_prefix_tokens:]
    return {"cls": tokens[:, 0], "patches": patches.reshape(-1, tokens.shape[-1]),
            "patch_mean": patches.astype(np.float64).mean(axis=1)}
