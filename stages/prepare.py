"""prepare: write a fixed, validated copy of the data set to data/prepared/."""
from tgo.data import (list_imagefolder, load_imagefolder_split, make_synthetic, write_prepared)
from tgo.io import TGOError, atomic_dir, load_params, run_stage

OUT = "data/prepared"


def main():
    cfg = load_params()["prepare"]
    size = cfg["image_size"]
    if cfg["on_bad_image"] not in ("skip", "error"):
        raise TGOError(f"prepare.on_bad_image={cfg['on_bad_image']!r}: use skip or error")
    if cfg["source"] == "synthetic":
        splits = {}
        for i, split in enumerate(("train", "val")):
            images, labels, classes = make_synthetic(cfg["num_classes"], cfg[f"{split}_per_class"],
                                                     size, seed=cfg["seed"] * 2 + i)
            splits[split] = (images, labels)
        bad = []
    elif cfg["source"] == "imagefolder":
        if not cfg["path"]:
            raise TGOError("prepare.path is not set; point it at a tree with train/<class>/ and "
                           "val/<class>/ folders")
        listing, classes = list_imagefolder(cfg["path"])
        splits, bad = {}, []
        for split, items in listing.items():
            images, labels, skipped = load_imagefolder_split(items, classes, size, cfg["on_bad_image"])
            splits[split] = (images, labels)
            bad += skipped
    else:
        raise TGOError(f"prepare.source={cfg['source']!r}: use synthetic or imagefolder")

    with atomic_dir(OUT) as tmp:
        manifest = write_prepared(tmp, splits, classes, cfg["source"], bad)
    counts = ", ".join(f"{s} {m['count']}" for s, m in manifest["splits"].items())
    print(f"prepared {cfg['source']} data: {len(classes)} classes, {counts} images of "
          f"{size}x{size}; {len(bad)} unreadable images skipped -> {OUT}")


if __name__ == "__main__":
    run_stage("prepare", main)
