"""ImageNet-100, or probe images of ImageNet-1k's val split, from a user's ImageNet-1k (ILSVRC2012)
directory.

ImageNet-100 is the 100-class subset of Tian, Krishnan & Isola, "Contrastive Multiview Coding"
(CMC), listed in imagenet100_cmc.txt next to this file. The imagenet_val source reads val/ alone
(all classes, or those of a class list). Accepted layouts of the ImageNet root:

    train/<wnid>/*.JPEG
    val/<wnid>/*.JPEG                          (class folders), or
    val/*.JPEG + LOC_val_solution.csv          (flat, with Kaggle's ground-truth CSV:
                                                ImageId,PredictionString = "<wnid> x0 y0 x1 y1 ...")

Each image is decoded once, its shorter side resized and centre-cropped, into a memory-mappable
uint8 array, by a pool of worker processes that write their rows straight into the array.
Progress (the rows done) is saved after every chunk in a work directory next to the output, so a
killed run resumes where it stopped.
"""
import csv
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from tgo.data import IMAGE_SUFFIXES, SPLITS, load_image
from tgo.io import TGOError, write_json

CMC_CLASSES = Path(__file__).with_name("imagenet100_cmc.txt")
VAL_CSV = "LOC_val_solution.csv"
CHUNK = 256  # images per work item; progress is saved after each


def read_class_list(path=None):
    """The wnids of a class-list file (one per line; default: the CMC ImageNet-100 list)."""
    path = Path(path) if path else CMC_CLASSES
    if not path.is_file():
        raise TGOError(f"prepare.class_list: file '{path}' does not exist; give a text file with one "
                       "wnid per line, or null for the ImageNet-100 (CMC) list")
    wnids = [w for w in path.read_text().split() if w]
    if len(set(wnids)) != len(wnids) or not wnids:
        raise TGOError(f"prepare.class_list: '{path}' is empty or lists a wnid twice")
    return wnids


def _images_in(folder):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _imagenet_root(root, splits):
    """The ImageNet-1k root as a Path, checked to hold the split folders that will be read."""
    root, needs = Path(root), " and ".join(f"{s}/" for s in splits)
    if not root.is_dir():
        raise TGOError(f"prepare.path: directory '{root}' does not exist; point it at the ImageNet-1k "
                       f"root holding {needs}")
    for split in splits:
        if not (root / split).is_dir():
            raise TGOError(f"prepare.path: '{root / split}' is missing; the ImageNet root needs {needs}")
    return root


def _val_by_csv(root, wnids, val_csv):
    """{wnid: paths} of the flat val/*.JPEG files, labelled by the ground-truth CSV; wnids None =
    every wnid of the CSV, sorted."""
    csv_path = Path(val_csv) if val_csv else root / VAL_CSV
    if not csv_path.is_file():
        raise TGOError(f"prepare.val_csv: '{csv_path}' not found; val/ has no class folders, so the "
                       f"flat val/*.JPEG files need the ground-truth CSV ({VAL_CSV})")
    by_class = {w: [] for w in wnids or ()}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            wnid = row["PredictionString"].split()[0]
            path = root / "val" / f"{row['ImageId']}.JPEG"
            if wnids is None:
                by_class.setdefault(wnid, [])
            if wnid in by_class and path.is_file():
                by_class[wnid].append(path)
    return {w: by_class[w] for w in wnids or sorted(by_class)}


def _list_split(root, split, wnids, val_csv):
    """([(path, wnid), ...], classes) of one split of the ImageNet root.

    Layouts: <split>/<wnid>/ class folders (train always; val when it has a folder of a wanted class),
    else flat val/*.JPEG labelled by val_csv. wnids None = every class present (folder names, or
    every wnid of the CSV, sorted); a listed wnid without images is an error naming it.
    """
    split_dir = root / split
    folders = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    wanted = folders if wnids is None else wnids
    if split == "train" or set(folders) & set(wanted):
        by_class = {w: _images_in(split_dir / w) if (split_dir / w).is_dir() else [] for w in wanted}
    else:
        by_class = _val_by_csv(root, wnids, val_csv)
    for wnid in wnids or ():
        if not by_class[wnid]:
            raise TGOError(f"prepare.path: class {wnid} of prepare.class_list has no images in "
                           f"'{split_dir}'; add its {split} images or remove it from the list")
    items = [(p, w) for w, paths in by_class.items() for p in sorted(paths)]
    if not items:
        raise TGOError(f"prepare.path: '{split_dir}' has no images; give the ImageNet-1k root")
    return items, list(by_class)


def list_imagenet(root, wnids, val_csv=None):
    """{split: [(path, wnid), ...]} for the listed classes of an ImageNet-1k tree (train/ and val/).

    A listed class without images in a split is an error naming the wnid; other classes in the tree
    are ignored. The val split uses val/<wnid>/ folders when they exist, otherwise the flat
    val/*.JPEG files labelled by val_csv (default <root>/LOC_val_solution.csv).
    """
    root = _imagenet_root(root, SPLITS)
    return {split: _list_split(root, split, wnids, val_csv)[0] for split in SPLITS}


def list_imagenet_val(root, wnids=None, val_csv=None):
    """([(path, wnid), ...], classes) of the val split alone (train/ may be missing), in either val
    layout; wnids None = every class present, sorted (all 1000: timm's ImageNet-1k order)."""
    return _list_split(_imagenet_root(root, ("val",)), "val", wnids, val_csv)


def _decode_chunk(args):
    """Worker: decode images[start:start+len(paths)] into the memmap. Returns (start, bad)."""
    npy, start, paths, size, resize = args
    images = np.load(npy, mmap_mode="r+")
    bad = []
    for i, path in enumerate(paths):
        try:
            images[start + i] = load_image(path, size, resize)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            bad.append((start + i, str(path), str(e).splitlines()[0] if str(e) else type(e).__name__))
    images.flush()
    return start, bad


def decode_split(items, classes, size, resize, work_dir, split, workers, on_bad_image):
    """Decode one split of items [(path, class name, or None for an unlabelled image: label -1)]
    into work_dir/<split>_decoding.npy, resuming saved progress.

    Returns (path of the images file with only readable images, labels, bad images). A listing that
    differs from the saved one (other files or sizes) starts the split over.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    npy, state_path = work_dir / f"{split}_decoding.npy", work_dir / f"{split}_state.json"
    key = hashlib.sha256(json.dumps([[str(p) for p, _ in items], size, resize]).encode()).hexdigest()
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state.get("key") != key or not npy.exists():
        state = {"key": key, "done": [], "bad": []}
        np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(len(items), size, size, 3)).flush()
        write_json(state_path, state)
    done = set(state["done"])
    todo = [s for s in range(0, len(items), CHUNK) if s not in done]
    if done:
        print(f"{split}: resuming, {len(done)} of {len(done) + len(todo)} chunks already decoded")
    jobs = [(str(npy), s, [str(p) for p, _ in items[s:s + CHUNK]], size, resize) for s in todo]
    pool = ProcessPoolExecutor(workers)
    try:
        with tqdm(total=len(items), initial=len(items) - sum(len(j[2]) for j in jobs),
                  desc=f"decoding {split}", unit="img", leave=False) as bar:
            for start, bad in pool.map(_decode_chunk, jobs):
                if bad and on_bad_image == "error":
                    raise TGOError(f"{bad[0][1]}: unreadable image ({bad[0][2]}); fix or remove it, or "
                                   "set prepare.on_bad_image: skip")
                state["done"].append(start)
                state["bad"] += bad
                write_json(state_path, state)
                bar.update(len(items[start:start + CHUNK]))
    finally:
        pool.shutdown(cancel_futures=True)

    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([-1 if c is None else index[c] for _, c in items], dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(items)), [b[0] for b in state["bad"]])
    if len(keep) < len(items) and not state.get("compacted"):  # copy the readable rows out
        src = np.load(npy, mmap_mode="r")
        compact = work_dir / f"{split}_compact.npy"
        dst = np.lib.format.open_memmap(compact, mode="w+", dtype=np.uint8, shape=(len(keep), size, size, 3))
        for s in range(0, len(keep), 4096):
            dst[s:s + 4096] = src[keep[s:s + 4096]]
        dst.flush()
        del src, dst
        os.replace(compact, npy)
        state["compacted"] = True
        write_json(state_path, state)
    return npy, labels[keep], [{"path": p, "reason": r} for _, p, r in state["bad"]]
