"""prepare: write a fixed, validated copy of the data set to data/prepared/."""
import os
import shutil
from pathlib import Path

import numpy as np

from tgo.data import decode_split, make_synthetic, write_prepared
from tgo.io import atomic_dir, run_stage, usable_cpus
from tgo.params import load
from tgo.runs import PREPARED
from tgo.sources import list_source

WORK = Path("data/prepare-work")  # decoding progress of image files, kept until prepare finishes


def main():
    cfg = load("prepare")
    size, workers = cfg["image_size"], cfg["workers"] or usable_cpus()
    splits, decoded, bad = {}, {}, []  # decoded: {split: images file decoded in place}
    if cfg["source"] == "synthetic":
        per_class = {"train": cfg["train_per_class"], "val": cfg["val_per_class"]}
        for i, split in enumerate(("train", "val")):
            images, labels, classes = make_synthetic(cfg["num_classes"], per_class[split], size,
                                                     seed=cfg["seed"] * 2 + i, workers=workers)
            splits[split] = (images, labels)
    else:  # image files: every other source of tgo.sources.SOURCES
        listing, classes = list_source(cfg)
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
