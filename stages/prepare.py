"""prepare: write a fixed, validated copy of the data set to data/prepared/."""
import os
import shutil
from pathlib import Path

import numpy as np

from tgo.data import list_imagefolder, list_probe_folder, load_imagefolder_split, make_synthetic, write_prepared
from tgo.imagenet import decode_split, list_imagenet, list_imagenet_val, read_class_list
from tgo.io import TGOError, atomic_dir, run_stage, usable_cpus
from tgo.params import load
from tgo.runs import PREPARED

WORK = Path("data/prepare-work")  # decoding progress of large sets, kept until prepare finishes
# What prepare.path must point at, for the sources decoded by decode_split.
PATH_HELP = {"imagenet100": "the ImageNet-1k root (train/<wnid>/, val/)",
             "imagenet_val": "the ImageNet-1k root (only its val/ is read)",
             "probe_folder": "a folder of images (in class subfolders for labels)"}


def list_files(cfg):
    """({split: [(path, class or None), ...]}, classes) of imagenet100, imagenet_val or probe_folder;
    the probe-only sources list a val split alone."""
    if not cfg["path"]:
        raise TGOError(f"prepare.path is not set; point it at {PATH_HELP[cfg['source']]}")
    if cfg["source"] == "imagenet100":
        classes = sorted(read_class_list(cfg["class_list"]))
        return list_imagenet(cfg["path"], classes, cfg["val_csv"]), classes
    if cfg["source"] == "imagenet_val":
        # null: every class present; read_class_list(None) would be the ImageNet-100 list
        wnids = sorted(read_class_list(cfg["class_list"])) if cfg["class_list"] else None
        items, classes = list_imagenet_val(cfg["path"], wnids, cfg["val_csv"])
    else:
        items, classes = list_probe_folder(cfg["path"])
    return {"val": items}, classes


def main():
    cfg = load("prepare")
    size, workers = cfg["image_size"], cfg["workers"] or usable_cpus()
    decoded = {}  # {split: images file decoded in place} (the sources listed by list_files)
    if cfg["source"] == "synthetic":
        splits = {}
        per_class = {"train": cfg["train_per_class"], "val": cfg["val_per_class"]}
        for i, split in enumerate(("train", "val")):
            images, labels, classes = make_synthetic(cfg["num_classes"], per_class[split], size,
                                                     seed=cfg["seed"] * 2 + i, workers=workers)
            splits[split] = (images, labels)
        bad = []
    elif cfg["source"] == "imagefolder":
        if not cfg["path"]:
            raise TGOError("prepare.path is not set; point it at a tree with train/<class>/ and "
                           "val/<class>/ folders")
        listing, classes = list_imagefolder(cfg["path"])
        splits, bad = {}, []
        for split, items in listing.items():
            images, labels, skipped = load_imagefolder_split(items, classes, size, cfg["on_bad_image"], cfg["resize"])
            splits[split] = (images, labels)
            bad += skipped
    else:  # imagenet100, imagenet_val, probe_folder
        listing, classes = list_files(cfg)
        splits, bad = {}, []
        for split, items in listing.items():
            decoded[split], labels, skipped = decode_split(items, classes, size, cfg["resize"], WORK, split,
                                                           workers, cfg["on_bad_image"])
            splits[split] = (None, labels)
            bad += skipped

    with atomic_dir(PREPARED) as tmp:
        for split, npy in decoded.items():
            os.replace(npy, tmp / f"{split}_images.npy")
            splits[split] = (np.load(tmp / f"{split}_images.npy", mmap_mode="r"), splits[split][1])
        manifest = write_prepared(tmp, splits, classes, cfg["source"], bad)
    shutil.rmtree(WORK, ignore_errors=True)
    counts = ", ".join(f"{s} {m['count']}" for s, m in manifest["splits"].items())
    labelled = f"{len(classes)} classes" if classes else "unlabelled"
    print(f"prepared {cfg['source']} data: {labelled}, {counts} images of "
          f"{size}x{size}; {len(bad)} unreadable images skipped -> {PREPARED}")


if __name__ == "__main__":
    run_stage("prepare", main)
