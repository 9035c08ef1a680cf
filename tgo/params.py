"""Every parameter of the pipeline in one place: its group, type, allowed values and what it does.

params.yaml holds one group per stage (composed from conf/ by DVC's Hydra composition; the values
live there). A stage calls ``load("spectral")`` (or several groups) and gets plain dicts whose
every key is present, of the declared type and inside its declared range, or the stage stops with
one line naming the key, the value and what is allowed, before it writes or deletes anything.
Checks that need the data (a probe set no larger than the val split, a patch size that divides
the image size) stay in the stages, which make them before writing too.

``python -m tgo.params`` prints the parameter reference that README.md carries (a test keeps the
two equal).
"""
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from tgo.io import TGOError

INF = math.inf
# Why a key of the image-file sources cannot move the micro config's outputs (tests/test_params.py).
_FILES_ONLY = "read by the image-file sources only; the micro config draws synthetic images"


@dataclass(frozen=True)
class Param:
    """One parameter: kind is int, float, str, bool, list (of integers) or "pair" (a list of two
    numbers of `item` kind); `bounds` (low, high, low_open, high_open) applies to numbers and to each item of a pair;
    `choices` lists the allowed strings; `null` allows null; `check(value, group)` returns an error
    text for what a range cannot say (relations between keys).
    For tests/test_params.py, which reruns the stage on the micro config with the key changed and
    asserts its outputs move: `other`, a valid value that moves them where the next one (another
    choice, the value + 1, half a float, the pair's first + 1) would not; `given`, values of the same
    group both runs take (a key that only acts under another's setting); `same`, the outputs must
    stay identical instead (a speed knob); `inert`, why no value can move them on the micro config
    (they must stay identical); `untested`, why the test cannot run it, and what tests it instead."""
    kind: object
    doc: str
    bounds: tuple = None
    choices: tuple = ()
    null: bool = False
    item: type = int
    check: Callable = None
    other: object = None
    given: dict = None
    same: bool = False
    inert: str = None
    untested: str = None


def at_least(low):
    return (low, INF, False, True)


POSITIVE = (0, INF, True, True)
UNIT = (0, 1, False, False)  # [0, 1]


def _window(ranks, group):
    lo, hi = ranks
    if hi - lo < 2:
        return "the window needs at least 3 ranks (hi - lo >= 2)"
    return None


def _resize_covers_crop(resize, group):
    if resize is not None and resize < group["image_size"]:
        return f"is smaller than the centre crop prepare.image_size={group['image_size']}; use at least that"
    return None


def _checkpoints_within_epochs(epochs, group):
    bad = [e for e in epochs if e > group["epochs"]]
    if bad:
        return f"epochs {bad} are beyond train.epochs={group['epochs']}; list epochs between 0 and train.epochs"
    return None


def _ordered(pair, group):
    return None if pair[0] <= pair[1] else "the first value must not exceed the second"


def _even(value, group):
    return None if value % 2 == 0 else "must be even (a half and its complement per draw)"


def _rendezvous(value, group):
    if group["nnodes"] > 1 and not value:
        return "train.nnodes > 1 needs host:port of a node that every node can reach"
    return None


def _splits_over_processes(batch, group):
    n = group["nproc_per_node"] * group["nnodes"]
    if batch % n:
        return f"does not split over {n} processes; use a multiple of train.nproc_per_node x train.nnodes"
    return None


SCHEMA = {
    "prepare": {
        # synthetic, then the names of tgo.sources.SOURCES (a test keeps them equal)
        "source": Param(str, "where the images come from; imagenet_val and probe_folder hold probe images "
                             "only (a val split, for analysing model.weights or a zoo)",
                        choices=("synthetic", "imagefolder", "imagenet100", "imagenet_val", "probe_folder"),
                        untested="the other sources read image files: tests/test_data.py and tests/test_imagenet.py "
                                 "build them"),
        "path": Param(str, "imagefolder: a tree with `train/<class>/` and `val/<class>/`; imagenet100: the "
                           "ImageNet-1k root; imagenet_val: the ImageNet-1k root (only val/ is read); "
                           "probe_folder: a folder of images, in class subfolders for labels", null=True,
                 inert=_FILES_ONLY, other="unused"),
        "class_list": Param(str, "imagenet100, imagenet_val: a file of wnids, one per line; null = the CMC "
                                 "ImageNet-100 list (imagenet100), every class (imagenet_val)", null=True,
                       inert=_FILES_ONLY, other="unused.txt"),
        "val_csv": Param(str, "imagenet100, imagenet_val with a flat val/: the ground-truth CSV; null = "
                              "`<path>/LOC_val_solution.csv`", null=True,
                    inert=_FILES_ONLY, other="unused.csv"),
        "resize": Param(int, "image files: shorter side before the centre crop; null = image_size",
                        at_least(1), null=True, check=_resize_covers_crop,
                        inert=_FILES_ONLY, other=32),
        "workers": Param(int, "synthetic: drawing threads (the images do not depend on them); image files: "
                              "decoding processes; null = all usable CPU cores",
                         at_least(1), null=True, same=True, other=1),
        "num_classes": Param(int, "synthetic: number of classes (up to 100: an ImageNet-100-shaped set)", (2, 100, False, False)),
        "train_per_class": Param(int, "synthetic: training images per class", at_least(1)),
        "val_per_class": Param(int, "synthetic: validation images per class", at_least(1)),
        "image_size": Param(int, "side of the stored square images (pixels)", at_least(1)),
        "on_bad_image": Param(str, "an unreadable image is skipped (and listed in the manifest) or stops "
                                   "the stage", choices=("skip", "error"),
                              inert=_FILES_ONLY),
        "seed": Param(int, "synthetic: the random seed of the images", at_least(0)),
    },
    "model": {
        "name": Param(str, "a timm ViT, with or without a pretrained tag (vit_small_patch16_224.augreg_in1k); its "
                           "architecture comes from timm's registry, the keys below override it",
                     other="vit_small_patch14_reg4_dinov2"),
        "weights": Param(str, "null: train the model here; else weights to analyse instead of training: a local "
                              ".safetensors, PyTorch state dict or .npz, a hub cache directory (models--timm--NAME) "
                              "or one of its snapshots, a timm local-dir", null=True,
                        untested="weights to analyse instead of training: tests/test_external.py loads every kind"),
        "patch_size": Param(int, "patch side (pixels); must divide the input size; null = the name's",
                            at_least(1), null=True, other=2),
        "depth": Param(int, "number of blocks; null = the name's", at_least(1), null=True),
        "embed_dim": Param(int, "width D; null = the name's", at_least(1), null=True, other=48),
        "num_heads": Param(int, "attention heads (must divide embed_dim); null = the name's", at_least(1),
                           null=True, other=4),
        "mlp_ratio": Param(float, "MLP hidden width / D; null = the name's", POSITIVE, null=True),
        "drop_path_rate": Param(float, "stochastic depth rate when training; null = timm's default",
                                (0, 1, False, True), null=True),
        "img_size": Param(int, "the network's input size; null = prepare.image_size when training (larger stored "
                               "images are centre-cropped to it), the name's own with weights", at_least(1),
                          null=True, other=8),
    },
    "train": {
        "epochs": Param(int, "training epochs", at_least(1)),
        "batch_size": Param(int, "global batch (split over train.nproc_per_node x train.nnodes processes)",
                            at_least(1), check=_splits_over_processes),
        "eval_batch_size": Param(int, "batch of the validation pass", at_least(1), same=True, other=7),
        "lr": Param(float, "peak learning rate of AdamW (x batch_size / lr_base_batch if that is set)", POSITIVE),
        "min_lr_ratio": Param(float, "the cosine schedule's final and warmup-start lr, as a share of lr", UNIT),
        "weight_decay": Param(float, "AdamW weight decay (not on norms and biases)", at_least(0)),
        "warmup_epochs": Param(float, "linear warmup before the cosine decay (may be fractional)", at_least(0)),
        "label_smoothing": Param(float, "label smoothing of the cross-entropy", (0, 1, False, True)),
        "clip_grad": Param(float, "gradient norm clipping; 0 = off", at_least(0)),
        "augment": Param(str, "light: flip + shift by up to augment_pad px; deit: the DeiT recipe on the device",
                         choices=("light", "deit")),
        "augment_pad": Param(int, "light: largest shift (pixels)", at_least(0)),
        "rrc_scale": Param("pair", "deit: random resized crop area range", (0, 1, True, False), item=float,
                           check=_ordered, given={"augment": "deit"}, other=[0.5, 1.0]),
        "hflip": Param(float, "deit: probability of a horizontal flip", UNIT, given={"augment": "deit"}),
        "randaug_ops": Param(int, "deit: RandAugment ops per image (a subset of timm's; tgo/augment.py)",
                             at_least(0), given={"augment": "deit"}),
        "randaug_magnitude": Param(float, "deit: RandAugment magnitude", (0, 10, False, False),
                                   given={"augment": "deit"}),
        "randaug_std": Param(float, "deit: standard deviation of the magnitude per op", at_least(0),
                             given={"augment": "deit"}),
        "mixup_alpha": Param(float, "deit: mixup Beta(alpha, alpha); 0 = off", at_least(0), given={"augment": "deit"}),
        "cutmix_alpha": Param(float, "deit: cutmix Beta(alpha, alpha); 0 = off", at_least(0),
                              given={"augment": "deit"}),
        "random_erasing": Param(float, "deit: probability of random erasing", UNIT, given={"augment": "deit"}),
        "lr_base_batch": Param(int, "if set, the learning rate is lr x batch_size / lr_base_batch (DeiT: 512)",
                               at_least(1), null=True, other=8),
        "amp": Param(str, "bf16: autocast in bfloat16; null: float32", choices=("bf16",), null=True),
        "compile": Param(bool, "torch.compile the model",
                         untested="compiling takes minutes on 2 cores; make gpu-check times training with and "
                                  "without it"),
        "checkpoint_epochs": Param(list, "epochs whose weights are kept (0 = initialisation; 0 and the last "
                                         "epoch are always kept)", at_least(0),
                                   check=_checkpoints_within_epochs, other=[0, 2]),
        "seed": Param(int, "seed of initialisation, shuffling and augmentation", at_least(0)),
        "nproc_per_node": Param(int, "> 1: DistributedDataParallel over this many processes (GPUs) via torchrun",
                                at_least(1),
                                untested="several processes: tests/test_distributed.py trains with 2 on the CPU"),
        "nnodes": Param(int, "> 1: several machines; start the printed torchrun command on each other node",
                        at_least(1), untested="several machines"),
        "rdzv_endpoint": Param(str, "host:port of the rendezvous when nnodes > 1", null=True, check=_rendezvous,
                               untested="read only with train.nnodes > 1 (several machines)"),
    },
    "extract": {
        "probe_size": Param(int, "probe images (drawn from the val split, the same for every checkpoint); "
                                 "null = every image of the val split", at_least(2), null=True),
        "batch_size": Param(int, "images per forward pass", at_least(1), same=True, other=5),
        "precision": Param(str, "the forward pass on the GPU (or the CPU if there is none): fp32 (TF32 off), or "
                                "bf16 autocast (each site within 3% relative error of fp32: tests/test_models.py)",
                           choices=("fp32", "bf16")),
        "seed": Param(int, "seed of the probe-set draw", at_least(0)),
    },
    "spectral": {
        "alpha_ranks": Param("pair", "alpha's 1-indexed inclusive rank window [lo, hi]", at_least(1),
                             check=_window),
        "cosine_max_samples": Param(int, "mean cosine similarity uses at most this many samples (a seeded "
                                         "subsample); null = all", at_least(2), null=True, other=100),
    },
    "tokens": {
        "alpha_ranks": Param("pair", "alpha's 1-indexed inclusive rank window [lo, hi] per token", at_least(1),
                             check=_window),
        "n_clusters": Param(int, "clusters of patch tokens by alpha signature", at_least(2)),
        "cluster_method": Param(str, "scikit-learn clustering of the signatures", choices=("kmeans", "agglomerative"),
                                inert="the micro config's 16 patch signatures fall into 3 clusters that both methods "
                                      "find alike"),
        "n_permutations": Param(int, "label permutations of the spatial-coherence null", at_least(2)),
        "seed": Param(int, "seed of k-means and of the permutations", at_least(0)),
    },
    "correlation": {
        "max_images": Param(int, "probe images used (the first ones of the probe set)", at_least(2), other=16),
    },
    "mi": {
        "n_channels": Param(int, "channels sampled per sublayer (the same for every block and checkpoint)",
                            at_least(1)),
        "reference": Param("pair", "[row, col] of the reference patch; null = the grid centre (1, 2 or 4 central "
                                   "patches, MI averaged over them)", at_least(0), null=True, other=[0, 0]),
        "estimator": Param(str, "ksg: Kraskov k-NN minus a shuffle baseline; binned: a 2-D histogram",
                           choices=("ksg", "binned")),
        "k": Param(int, "ksg: neighbours", at_least(1)),
        "n_shuffles": Param(int, "ksg: shuffles averaged for the baseline", at_least(1)),
        "max_images": Param(int, "probe images used (the first ones of the probe set)", at_least(2), other=16),
        "half_samples": Param(int, "random halves of the images (complementary pairs, drawn with ci.seed) that MI and "
                                   "kurtosis are recomputed on for their intervals, at the first and last checkpoint",
                              at_least(4), check=_even, other=22),
        "bowtie_bins": Param(int, "bins per axis of the conditional histograms", at_least(2)),
        "seed": Param(int, "seed of the channel sample and the shuffles", at_least(0)),
    },
    "qk": {
        "max_images": Param(int, "probe images used for angle vs attention", at_least(2)),
        "angle_bins": Param(int, "bins of the angle axis (0..180 degrees)", at_least(2)),
    },
    "ci": {
        "level": Param(float, "confidence level of every interval (delete-a-group jackknife over the probe "
                              "images, tgo.geometry.stats); a claim judged on m cases uses 1 - (1 - level) / m "
                              "per case", (0, 1, True, True)),
        "groups": Param(int, "groups of probe images the jackknife leaves out one at a time (at most the "
                             "number of images)", at_least(2), other=4),
        "seed": Param(int, "the random partition of the probe images into groups, and the order of the "
                           "nested subsets of the sample-size curves", at_least(0)),
    },
    # A mapping {id: entry}: the models analysed side by side (every key but name may be left out).
    "zoo": {
        "name": Param(str, "a timm ViT, with or without a pretrained tag, as model.name",
                      other="vit_small_patch14_reg4_dinov2"),
        "weights": Param(str, "its weights, any source model.weights takes; null = timm's random "
                              "initialisation (seed 0), a baseline", null=True,
                         untested="weights to analyse: tests/test_zoo.py and tests/test_external.py load them"),
        "patch_size": Param(int, "override of the name's patch side; null = the name's", at_least(1), null=True,
                            other=2),
        "depth": Param(int, "override of the name's number of blocks", at_least(1), null=True),
        "embed_dim": Param(int, "override of the name's width", at_least(1), null=True, other=48),
        "num_heads": Param(int, "override of the name's attention heads", at_least(1), null=True, other=4),
        "mlp_ratio": Param(float, "override of the name's MLP ratio", POSITIVE, null=True, other=2.0),
        "img_size": Param(int, "input size; null = the name's own", at_least(1), null=True, other=8),
    },
}
# Groups that map ids (letters, digits, _ and -) to entries of their schema.
MAPPINGS = ("zoo",)
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _within(v, bounds):
    if bounds is None:
        return True
    low, high, low_open, high_open = bounds
    return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)


def _range_text(bounds):
    low, high, low_open, high_open = bounds
    if high == INF:
        return f"> {low:g}" if low_open else f">= {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def allowed(p):
    """What a parameter accepts, in words (the error messages and the README use it)."""
    if p.choices:
        text = "one of " + ", ".join(p.choices)
    elif p.kind is bool:
        text = "true or false"
    elif p.kind is str:
        text = "a string"
    else:
        noun = {int: "an integer", float: "a number"}
        if p.kind == "pair":
            text = f"a list of 2 {'integers' if p.item is int else 'numbers'}"
        elif p.kind is list:
            text = "a list of integers"
        else:
            text = noun[p.kind]
        if p.bounds:
            text += " " + _range_text(p.bounds)
    return f"null or {text}" if p.null else text


def _valid(p, v):
    if v is None:
        return p.null
    if p.kind is bool:
        return isinstance(v, bool)
    if p.kind is str:
        return isinstance(v, str) and (not p.choices or v in p.choices)
    if p.kind is int:
        return _is_int(v) and _within(v, p.bounds)
    if p.kind is float:
        return _is_number(v) and _within(v, p.bounds)
    items = v if isinstance(v, list) else None
    if items is None or (p.kind == "pair" and len(items) != 2):
        return False
    is_item = _is_int if (p.kind is list or p.item is int) else _is_number
    return all(is_item(x) and _within(x, p.bounds) for x in items)


def _show(v):
    """A value as the user wrote it in params.yaml or after -S (null, true, nan, [2.5, 10], abc)."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return str(v)


def validate(group, values):
    """The group's values, checked against SCHEMA[group]; raises TGOError on the first problem. A
    mapping group (MAPPINGS) is checked entry by entry; an entry's left-out keys are null."""
    if group in MAPPINGS:
        if not isinstance(values, dict):
            raise TGOError(f"params.yaml: group '{group}' is {_show(values)}, not a mapping of ids to entries; "
                           f"use {{}} for none")
        out = {}
        for key, entry in values.items():
            if not (isinstance(key, str) and ID.fullmatch(key)):
                raise TGOError(f"{group}.{key}: an id may hold letters, digits, _ and - (starting with a letter "
                               "or digit); rename it")
            if not isinstance(entry, dict) or "name" not in entry:
                raise TGOError(f"{group}.{key}={_show(entry)}: must be a mapping with at least a name")
            filled = {k: entry.get(k) for k in SCHEMA[group]}
            out[key] = _validate_group(f"{group}.{key}", SCHEMA[group], {**filled, **entry})
        return out
    return _validate_group(group, SCHEMA[group], values)


def _validate_group(group, schema, values):
    if not isinstance(values, dict):
        raise TGOError(f"params.yaml: group '{group}' is {_show(values)}, not a mapping of its keys; restore "
                       "it from conf/ (make params)")
    for key in values:
        if key not in schema:
            close = difflib.get_close_matches(key, schema, n=1)
            hint = f"did you mean {group}.{close[0]}?" if close else f"the keys are {', '.join(schema)}"
            raise TGOError(f"{group}.{key}: unknown key; {hint}")
    for key, p in schema.items():
        if key not in values:
            raise TGOError(f"{group}.{key}: missing from params.yaml; restore it from conf/ (make params)")
        v = values[key]
        if not _valid(p, v):
            raise TGOError(f"{group}.{key}={_show(v)}: must be {allowed(p)}")
    for key, p in schema.items():
        problem = p.check(values[key], values) if p.check else None
        if problem:
            raise TGOError(f"{group}.{key}={_show(values[key])}: {problem}")
    return values


def load(*groups, path="params.yaml"):
    """Validated param groups from params.yaml: one dict for one group, else a dict of dicts.

    Every group of the file must be a known one (a stray group is an error wherever it is read).
    """
    path = Path(path)
    if not path.exists():
        raise TGOError(f"{path}: not found; run from the project root (where dvc.yaml is)")
    with open(path) as f:
        params = yaml.safe_load(f) or {}
    for group in params:
        if group not in SCHEMA:
            raise TGOError(f"{group}: unknown params group in {path}; the groups are {', '.join(SCHEMA)}")
    for group in groups:
        if group not in params:
            raise TGOError(f"{group}: group missing from {path}; restore it from conf/ (make params)")
    out = {g: validate(g, params[g]) for g in groups}
    return out[groups[0]] if len(groups) == 1 else out


def markdown():
    """The parameter reference of README.md: one table per group. The docs are plain text that reads
    the same in a terminal and rendered (a `<name>` placeholder goes in backticks; test_params)."""
    parts = []
    for group, schema in SCHEMA.items():
        intro = (" (a mapping of ids to entries; every key but name may be left out; {} for none)"
                 if group in MAPPINGS else "")
        parts.append(f"**{group}**{intro}\n\n| key | allowed | what it does |\n|---|---|---|")
        prefix = f"{group}.<id>" if group in MAPPINGS else group
        parts += [f"| `{prefix}.{k}` | {allowed(p)} | {p.doc} |" for k, p in schema.items()]
        parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown(), end="")
