"""Data sets: the embedded synthetic default, the listers of image-folder trees and probe folders,
the one decoder of image files, and the prepared on-disk format.

Every source of image files (tgo/sources.py: SOURCES) lists its files, [(path, class name or
None)] per split, and `decode_split` decodes them: each image once, its shorter side resized and
centre-cropped (`load_image`), into a memory-mappable uint8 array, by a pool of worker processes
that write their rows straight into the array. Progress (the rows done) is saved after every chunk
in a work directory, so a killed run resumes where it stopped; unreadable images are skipped (and
listed) or stop the stage.

A prepared data set is a directory with, per split, `<split>_images.npy` (uint8, N×H×W×3,
memory-mappable) and `<split>_labels.npy` (int64; -1 = unlabelled), plus `manifest.json` (source,
classes, counts per class and split, a SHA-256 per split, skipped images). Probe-only sources
(imagenet_val, probe_folder) hold a val split alone.
"""
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from tgo.io import TGOError, read_json, write_json

SPLITS = ("train", "val")
SHAPES = ("disk", "square", "triangle", "cross", "ring")
TEXTURES = ("solid", "hstripes", "vstripes", "dstripes", "astripes", "checker", "dots", "grid",
            "wide", "rings")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


# ---------------------------------------------------------------------------------------------
# Synthetic default: class c < 10 is an object with texture TEXTURES[c] (stripes of an orientation,
# checks, dots, ...) and shape SHAPES[c % 5]; classes 10..49 are the other shape-texture pairs,
# 50..99 all fifty again with the texture at half its period ("_fine"; an ImageNet-100-shaped set).
# Colour, position, scale and a cluttered background are random, so colour statistics do not give
# the class away: the network has to read the spatial pattern across pixels and patches.
# ---------------------------------------------------------------------------------------------

def synthetic_classes(num_classes):
    names = [f"{SHAPES[i % len(SHAPES)]}_{t}" for i, t in enumerate(TEXTURES)]
    names += [f"{s}_{t}" for t in TEXTURES for s in SHAPES if f"{s}_{t}" not in names]
    names += [f"{name}_fine" for name in names]
    if not 2 <= num_classes <= len(names):
        raise TGOError(f"prepare.num_classes={num_classes}: the synthetic set has 2..{len(names)} classes")
    return names[:num_classes]


def _texture(texture, u, v, period):
    """Boolean pattern (True: the object's colour, False: its complement) in object coordinates."""
    phase = lambda t: np.sin(2 * np.pi * t / period) > 0  # noqa: E731
    if texture == "solid":
        return np.ones_like(u, dtype=bool)
    if texture == "hstripes":
        return phase(v)
    if texture == "vstripes":
        return phase(u)
    if texture == "dstripes":
        return phase((u + v) / np.sqrt(2))
    if texture == "astripes":
        return phase((u - v) / np.sqrt(2))
    if texture == "checker":
        return phase(u) ^ phase(v)
    if texture == "dots":
        return ~(phase(u) & phase(v))
    if texture == "grid":
        return ~(np.cos(2 * np.pi * u / period) > 0.6) & ~(np.cos(2 * np.pi * v / period) > 0.6)
    if texture == "wide":
        return np.sin(2 * np.pi * v / (2.5 * period)) > 0
    if texture == "rings":
        return phase(np.hypot(u, v))
    raise ValueError(texture)


def _shape_mask(shape, u, v, r):
    """Boolean mask of a shape of radius r in rotated, centred coordinates (u, v)."""
    d = np.hypot(u, v)
    if shape == "disk":
        return d <= r
    if shape == "square":
        return (np.abs(u) <= 0.75 * r) & (np.abs(v) <= 0.75 * r)
    if shape == "triangle":
        # Equilateral triangle: intersection of three half-planes at 120 degrees.
        inside = np.ones_like(u, dtype=bool)
        for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
            inside &= u * np.cos(a) + v * np.sin(a) <= 0.5 * r
        return inside
    if shape == "cross":
        w = 0.33 * r
        return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))
    if shape == "ring":
        return (d <= r) & (d >= 0.55 * r)
    raise ValueError(shape)


def _background(rng, size):
    """Smooth random colour field, pixel noise and a few thin distractor strokes."""
    coarse = rng.uniform(0.15, 0.85, size=(3, 3, 3))
    field = Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    img = np.asarray(field, dtype=np.float64) / 255 + rng.normal(0.0, 0.04, size=(size, size, 3))
    for _ in range(rng.integers(3, 7)):
        y, x = rng.integers(0, size, 2)
        length = rng.integers(2, max(3, size // 6))
        if rng.random() < 0.5:
            img[y, x:x + length] = rng.uniform(0, 1, 3)
        else:
            img[y:y + length, x] = rng.uniform(0, 1, 3)
    return img


def synthetic_image(rng, label, classes, size):
    shape, texture, *fine = classes[label].split("_")
    img = _background(rng, size)
    r = rng.uniform(0.3, 0.45) * size
    cy, cx = rng.uniform(r, size - r, 2)
    theta = rng.uniform(-0.35, 0.35)  # small tilts: upright shapes keep the task learnable in a few CPU epochs
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
    mask = _shape_mask(shape, u, v, r)
    colour = rng.uniform(0, 1, 3)
    # Keep the object visible: its brightness must differ from the background's under it.
    if abs(colour.mean() - img[mask].mean()) < 0.25:
        colour = 1.0 - colour
    period = max(3.0, size / (16 if fine else 8))
    fill = np.where(_texture(texture, u, v, period)[..., None], colour, 1.0 - colour)
    img[mask] = fill[mask]
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_synthetic(num_classes, per_class, size, seed, workers=1):
    """Balanced synthetic split: (images uint8 N×size×size×3, labels int64, class names).

    Image i draws from its own generator (child i of numpy's SeedSequence(seed)), so the images are
    drawn in `workers` threads and are the same for any number of them."""
    classes = synthetic_classes(num_classes)
    labels = np.random.default_rng(seed).permutation(np.arange(num_classes * per_class) % num_classes)
    children = np.random.SeedSequence(seed).spawn(len(labels))
    images = np.empty((len(labels), size, size, 3), dtype=np.uint8)

    def draw(i):
        images[i] = synthetic_image(np.random.default_rng(children[i]), labels[i], classes, size)

    with ThreadPoolExecutor(workers) as pool:  # numpy releases the GIL for most of an image's work
        list(tqdm(pool.map(draw, range(len(labels))), total=len(labels), desc="synthetic images", unit="img",
                  leave=False))
    return images, labels.astype(np.int64), classes


# ---------------------------------------------------------------------------------------------
# Image folders: root/train/<class>/*, root/val/<class>/*
# ---------------------------------------------------------------------------------------------

def list_imagefolder(root):
    """{split: [(path, class_name), ...]} for an image-folder tree; validates the layout."""
    root = Path(root)
    if not root.is_dir():
        raise TGOError(f"prepare.path: directory '{root}' does not exist; point it at a tree with "
                       "train/<class>/ and val/<class>/ folders")
    classes = None
    listing = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise TGOError(f"prepare.path: '{split_dir}' is missing; the tree needs train/<class>/ "
                           "and val/<class>/ folders")
        names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        if not names:
            raise TGOError(f"prepare.path: '{split_dir}' has no class folders")
        if classes is None:
            classes = names
        elif names != classes:
            missing = sorted(set(classes) ^ set(names))
            raise TGOError(f"prepare.path: class folders differ between train/ and val/ "
                           f"({', '.join(missing[:5])}); both splits need the same classes")
        items = []
        for name in names:
            files = sorted(p for p in (split_dir / name).iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise TGOError(f"prepare.path: class folder '{split_dir / name}' has no images; "
                               "add images or remove the folder")
            items += [(p, name) for p in files]
        listing[split] = items
    return listing, classes


# ---------------------------------------------------------------------------------------------
# Probe folders: root/<class>/* (labelled) or root/* (unlabelled)
# ---------------------------------------------------------------------------------------------

def list_probe_folder(root):
    """([(path, class name or None), ...], classes) of a folder of probe images.

    Layouts: root/<class>/<image> (labels: the sorted subfolder names) or root/<image> with no
    subfolders (unlabelled: class None, classes []). Hidden entries (.name) are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise TGOError(f"prepare.path: directory '{root}' does not exist; point it at a folder of images "
                       "(in class subfolders for labels)")
    entries = [p for p in sorted(root.iterdir()) if not p.name.startswith(".")]
    folders = [p for p in entries if p.is_dir()]
    files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if folders and files:
        raise TGOError(f"prepare.path: '{root}' holds both image files and subfolders; put every image in a "
                       "class subfolder (labelled) or none (unlabelled)")
    if files:
        return [(p, None) for p in files], []
    if not folders:
        raise TGOError(f"prepare.path: '{root}' has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); add "
                       "images, directly or in class subfolders")
    items = []
    for folder in folders:
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise TGOError(f"prepare.path: class folder '{folder}' has no images; add images or remove the folder")
        items += [(p, folder.name) for p in images]
    return items, [f.name for f in folders]


# ---------------------------------------------------------------------------------------------
# Decoding: the one decoder of every image source (a listing of files, from SOURCES in
# tgo/sources.py) into the prepared format's arrays
# ---------------------------------------------------------------------------------------------

CHUNK = 256  # images per work item; progress is saved after each


def load_image(path, size, resize=None):
    """Decode, resize the shorter side to `resize` (default `size`) and centre-crop to size×size
    RGB uint8. JPEGs are decoded at the smallest DCT scale that stays at or above that size
    (PIL's draft mode), which is several times faster for large photos."""
    resize = resize or size
    with Image.open(path) as im:
        w, h = im.size
        scale = resize / min(w, h)
        target = (max(resize, round(w * scale)), max(resize, round(h * scale)))
        im.draft("RGB", target)
        im = _rgb(im)
        w, h = im.size
        scale = resize / min(w, h)
        im = im.resize((max(resize, round(w * scale)), max(resize, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _rgb(im):
    """An image as 8-bit RGB. 16-bit grayscale (PNG, TIFF; PIL modes I;16 and I) is scaled from 0..65535 to 0..255:
    PIL's convert("RGB") clips it, so that anything above 255 of 65535 would turn white."""
    if im.mode.startswith("I;16") or im.mode == "I":
        scaled = np.clip(np.asarray(im, dtype=np.float64) / 257.0, 0, 255)
        im = Image.fromarray(np.rint(scaled).astype(np.uint8))
    return im.convert("RGB")


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
    if not len(keep):
        raise TGOError(f"prepare.path: no readable images in the {split} split; fix or replace them")
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


# ---------------------------------------------------------------------------------------------
# Prepared format
# ---------------------------------------------------------------------------------------------

def split_hash(images, labels):
    """SHA-256 of the image bytes then the label bytes, streamed (images may be a large memmap)."""
    h = hashlib.sha256()
    for s in range(0, len(images), 1024):
        h.update(np.ascontiguousarray(images[s:s + 1024]).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


def write_prepared(out_dir, splits, classes, source, bad_images=()):
    """Write {split: (images, labels)} and the manifest into out_dir (an images file already
    there, decoded into place, is kept)."""
    out_dir = Path(out_dir)
    manifest = {"source": source, "classes": list(classes), "image_size": None, "splits": {},
                "bad_images": list(bad_images)}
    for split, (images, labels) in splits.items():
        if not (out_dir / f"{split}_images.npy").exists():  # large sets are decoded into place
            np.save(out_dir / f"{split}_images.npy", images)
        np.save(out_dir / f"{split}_labels.npy", labels)
        counts = np.bincount(labels[labels >= 0], minlength=len(classes))  # -1: unlabelled
        manifest["image_size"] = int(images.shape[1])
        manifest["splits"][split] = {
            "count": int(len(labels)),
            "per_class": {c: int(n) for c, n in zip(classes, counts)},
            "sha256": split_hash(images, labels),
        }
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def load_prepared(data_dir, split):
    """(images memmap uint8 N×H×W×3, labels int64, manifest) of one split."""
    data_dir = Path(data_dir)
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.exists():
        raise TGOError(f"{manifest_path}: not found; run the prepare stage first (dvc repro prepare)")
    manifest = read_json(manifest_path)
    if split not in manifest["splits"]:
        raise TGOError(f"{data_dir} has no {split} split: prepare.source={manifest['source']} holds probe "
                       f"images only; set model.weights to analyse pretrained weights, or prepare a source "
                       f"with a {split} split")
    images = np.load(data_dir / f"{split}_images.npy", mmap_mode="r")
    labels = np.load(data_dir / f"{split}_labels.npy")
    return images, labels, manifest
