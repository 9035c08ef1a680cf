"""prepare: write a fixed, validated copy of the data set to data/prepared/."""
import os
import shutil
from pathlib import Path

import numpy as np

from tgo.data import list_imagefolder, load_imagefolder_split, make_synthetic, write_prepared
from tgo.imagenet import decode_split, list_imagenet, read_class_list
from tgo.io import TGOError, atomic_dir, run_stage
from tgo.params import load

OUT = "data/prepared"
WORK = Path("data/prepare-work")  # decoding progress of large sets, kept until prepare finishes


def main():
    cfg = load("prepare")
    size = cfg["image_size"]
    decoded = {}  # {split: images file decoded in place} (imagenet100)
    if cfg["source"] == "synthetic":
        splits = {}
        per_class = {"train": cfg["train_per_class"], "val": cfg["val_per_class"]}
        for i, split in enumerate(("train", "val")):
            images, labels, classes = make_synthetic(cfg["num_classes"], per_class[split], size,
                                                     seed=cfg["seed"] * 2 + i)
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
    else:  # imagenet100
        if not cfg["path"]:
            raise TGOError("prepare.path is not set; point it at the ImageNet-1k root (train/<wnid>/, val/)")
        classes = sorted(read_class_list(cfg["class_list"]))
        listing = list_imagenet(cfg["path"], classes, cfg["val_csv"])
        workers = cfg["workers"] or os.cpu_count()
        splits, bad = {}, []
        for split, items in listing.items():
            decoded[split], labels, skipped = decode_split(items, classes, size, cfg["resize"], WORK, split,
                                                           workers, cfg["on_bad_image"])
            splits[split] = (None, labels)
            bad += skipped

    with atomic_dir(OUT) as tmp:
        for split, npy in decoded.items():
            os.replace(npy, tmp / f"{split}_images.npy")
            splits[split] = (np.load(tmp / f"{split}_images.npy", mmap_mode="r"), splits[split][1])
        manifest = write_prepared(tmp, splits, classes, cfg["source"], bad)
    shutil.rmtree(WORK, ignore_errors=True)
    counts = ", ".join(f"{s} {m['count']}" for s, m in manifest["splits"].items())
    print(f"prepared {cfg['source']} data: {len(classes)} classes, {counts} images of "
          f"{size}x{size}; {len(bad)} unreadable images skipped -> {OUT}")


if __name__ == "__main__":
    run_stage("prepare", main)
