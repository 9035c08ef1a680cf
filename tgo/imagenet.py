"""ImageNet-100, or probe images of ImageNet-1k's val split, from a user's ImageNet-1k (ILSVRC2012)
directory.

ImageNet-100 is the 100-class subset of Tian, Krishnan & Isola, "Contrastive Multiview Coding"
(CMC), listed in imagenet100_cmc.txt next to this file. The imagenet_val source reads val/ alone
(all classes, or those of a class list). This module lists their files and reads class lists;
tgo.data.decode_split decodes them. Accepted layouts of the ImageNet root:

    train/<wnid>/*.JPEG
    val/<wnid>/*.JPEG                          (class folders), or
    val/*.JPEG + LOC_val_solution.csv          (flat, with Kaggle's ground-truth CSV:
                                                ImageId,PredictionString = "<wnid> x0 y0 x1 y1 ...")
"""
import csv
from pathlib import Path

from tgo.data import IMAGE_SUFFIXES, SPLITS
from tgo.io import TGOError

CMC_CLASSES = Path(__file__).with_name("imagenet100_cmc.txt")
VAL_CSV = "LOC_val_solution.csv"


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
