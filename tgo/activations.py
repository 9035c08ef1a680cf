"""The activation store (data/activations), written by extract and read by every analysis stage.

  data/activations/epoch_XXX/      one directory per checkpoint
  data/activations/init/epoch_000/ pretrained weights only: their untrained network (the same
                                   architecture at random initialisation, tgo.checkpoints)
    meta.json                      epoch, probe indices, the model's preprocessing (`input`), token
                                   layout (prefix_tokens by name, grid), n_blocks, dim, head_input,
                                   attention (heads, LayerNorm eps, or why QK cannot be analysed)
    labels.npy                     the probe images' labels (-1: unlabelled)
    embed.npy                      (N, tokens, D) tokens entering block 1
    residual.npy, attn.npy, mlp.npy  (blocks, N, tokens, D) per block: its output, its attention and
                                   MLP sublayer contributions
    final_norm.npy                 (N, tokens, D) output of the final norm
    pooled.npy                     (sites, N, D) only when the head does not read the CLS token
                                   alone: the head's input computed from each site's tokens

Arrays are float16 .npy files, read memory-mapped. Token layout: the prefix tokens first, in the
order of meta.json's `prefix_tokens` (`cls`, `dist`, `reg_1`.., whichever the model has), then the
patches in row-major order on the patch grid.

The layer axis is called `depth` everywhere: depth 0 is the embedding, depth b (1..B) block b's
output (or, for a sublayer, block b itself) and depth B+1 the final norm. Its name, the `site`,
is "embed", "block_<b>" or "final_norm" (`site_name`); metrics JSON files key blocks by it.
"""
import os
import shutil
from pathlib import Path

import numpy as np

from tgo.io import TGOError, atomic_dir, progress, read_json, write_json

PER_BLOCK = ("residual", "attn", "mlp")


def site_name(depth, n_blocks):
    """The name of a depth along the residual stream: embed, block_<b>, final_norm."""
    if depth == 0:
        return "embed"
    return "final_norm" if depth == n_blocks + 1 else f"block_{depth}"


def checkpoints(root):
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
    return progress(found, desc="checkpoints", unit="ckpt")


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


def each_site(act_dir):
    """The per-site loop of an analysis stage over `residual_sites()`, with a progress bar below the
    checkpoints' (it goes when done)."""
    n_sites = load(act_dir, "residual").shape[0] + 2
    return progress(residual_sites(act_dir), total=n_sites, desc="sites", unit="site", leave=False)


def load_pooled(act_dir):
    """The head's input at every site (sites × N × D), or None when the head reads the CLS token."""
    return load(act_dir, "pooled") if (Path(act_dir) / "pooled.npy").exists() else None


def sample_set_names(layout):
    """The sample sets of a model, in order: `cls` (only with a class token), `pooled` (only when
    the head reads something else: the layout's head_input), `patches`, `patch_mean`."""
    return (["cls"] if "cls" in layout["prefix_tokens"] else []) + (["pooled"] if layout["head_input"] else []) \
        + ["patches", "patch_mean"]


# What each sample set is called and holds: (title, what it holds); `pooled` is worded by the model's
# head input (sample_set_words).
SAMPLE_SET_WORDS = {"cls": ("CLS token", "the CLS token"),
                    "patches": ("patch tokens, pooled", "every patch token of every image"),
                    "patch_mean": ("patch tokens, mean per image", "patch tokens averaged per image")}


def sample_set_words(layout):
    """{sample set: (title, what it holds)} of a model, in the order of sample_set_names: the one
    vocabulary of the spectral stage's log, the report and the zoo page."""
    head = layout["head_input"]
    words = {**SAMPLE_SET_WORDS, "pooled": (f"the head's input: {head}", f"the head's input ({head})")}
    return {name: words[name] for name in sample_set_names(layout)}


def image_set(sample_sets):
    """Among a model's sample sets, the one that stands for the image where a claim speaks of the
    CLS representation: the CLS token, or for a model without one the head's input (`pooled`)."""
    return "cls" if "cls" in sample_sets else "pooled"


def sample_sets(tokens, layout, pooled=None):
    """The sample sets of one site's tokens (N×T×D), as `sample_set_names(layout)`: the CLS token
    (N×D), the head's input at this site (`pooled`, N×D, given by the caller from pooled.npy),
    patch tokens pooled over images and positions (N·P×D), and patch tokens averaged per image
    (N×D). Prefix tokens (CLS, distillation, registers) are never among the patches."""
    prefix = layout["prefix_tokens"]
    patches = tokens[:, len(prefix):]
    sets = {}
    if "cls" in prefix:
        sets["cls"] = tokens[:, prefix.index("cls")]
    if layout["head_input"]:
        if pooled is None:
            raise ValueError("this model's head does not read the CLS token: pass its pooled input")
        sets["pooled"] = pooled
    sets["patches"] = patches.reshape(-1, tokens.shape[-1])
    sets["patch_mean"] = patches.mean(axis=1, dtype=np.float64)  # float64 sums, without a float64 copy
    return sets


def prefix_groups(prefix_tokens):
    """{group: token indices} of the prefix tokens: cls, dist, reg (all registers together)."""
    groups = {}
    for i, name in enumerate(prefix_tokens):
        groups.setdefault(name.split("_")[0], []).append(i)
    return groups


def tokens_used(layout):
    """The token layout in words, for the stages to say which tokens they used."""
    prefix = layout["prefix_tokens"]
    text = f"{layout['grid'][0] * layout['grid'][1]} patch tokens ({layout['grid'][0]}x{layout['grid'][1]})"
    return text + (f" after {len(prefix)} prefix token{'s' if len(prefix) > 1 else ''} ({', '.join(prefix)})"
                   if prefix else ", no prefix tokens")


def write_tokens_used(plot_dir, layout, used):
    """tokens_used.json in a stage's plot data: the model's token layout and preprocessing and, in
    words, which tokens the stage used (the report and the zoo page say so)."""
    keys = ("prefix_tokens", "grid", "n_blocks", "dim", "head_input", "input")
    write_json(Path(plot_dir) / "tokens_used.json", {"layout": {k: layout[k] for k in keys}, "used": used})


def image_of_rows(X, n_images):
    """The probe image of each row of a sample set: rows are image-major (an image's patch tokens
    are consecutive), so row r belongs to image r // (rows per image)."""
    return np.arange(len(X)) // (len(X) // n_images)


def rows_of_images(n_images, n_rows, images):
    """The indices of the rows of a sample set (n_rows, image-major) that belong to the given
    images, in that order."""
    per_image = n_rows // n_images
    return (np.asarray(images)[:, None] * per_image + np.arange(per_image)).ravel()


def extracted(work, fingerprint):
    """The checkpoints (their directories relative to the work directory: epoch_XXX, init/epoch_000)
    a killed extract already finished, if it extracted the same thing (the same `fingerprint`:
    checkpoints, probe images, model, preprocessing), else none. A checkpoint's directory appears
    only once it is complete (written atomically)."""
    stamp = Path(work) / "fingerprint.json"
    if not stamp.exists() or read_json(stamp) != fingerprint:
        return []
    return sorted(str(m.parent.relative_to(work)) for m in Path(work).glob("**/epoch_*/meta.json"))


def start_extraction(work, fingerprint):
    """An empty work directory for an extraction of `fingerprint` (whatever was there is dropped)."""
    shutil.rmtree(work, ignore_errors=True)
    Path(work).mkdir(parents=True)
    write_json(Path(work) / "fingerprint.json", fingerprint)


def publish_extraction(work, root):
    """Move every finished checkpoint (and the untrained network's directory) from the work directory
    into the activation store (renames, no copy) in one atomic replace, then drop the work directory."""
    with atomic_dir(root) as tmp:
        for d in sorted(p for p in Path(work).iterdir() if p.is_dir()):
            os.replace(d, tmp / d.name)
    shutil.rmtree(work)
