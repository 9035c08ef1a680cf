"""The data sources of the prepare stage, besides the synthetic default, in one table.

SOURCES maps each value of prepare.source to how its image files are listed and what prepare.path
must point at. A lister takes the prepare params and returns ({split: [(path, class name or None),
...]}, classes): both splits, or a val split alone for a probe-only source. tgo.data.decode_split
then decodes every source's files the same way. Adding a source: README, "Adding a data source".
"""
from typing import Callable, NamedTuple

from tgo.data import list_imagefolder, list_probe_folder
from tgo.imagenet import list_imagenet, list_imagenet_val, read_class_list
from tgo.io import TGOError


class Source(NamedTuple):
    list_files: Callable  # the prepare params -> ({split: [(path, class name or None), ...]}, classes)
    path_help: str  # what prepare.path must point at


def _imagefolder(cfg):
    return list_imagefolder(cfg["path"])


def _imagenet100(cfg):
    classes = sorted(read_class_list(cfg["class_list"]))
    return list_imagenet(cfg["path"], classes, cfg["val_csv"]), classes


def _imagenet_val(cfg):
    # null: every class present; read_class_list(None) would be the ImageNet-100 list
    wnids = sorted(read_class_list(cfg["class_list"])) if cfg["class_list"] else None
    items, classes = list_imagenet_val(cfg["path"], wnids, cfg["val_csv"])
    return {"val": items}, classes


def _probe_folder(cfg):
    items, classes = list_probe_folder(cfg["path"])
    return {"val": items}, classes


# tgo/params.py lists the same names as prepare.source's choices (a test keeps them equal): it is in
# every stage's import closure, so importing the listers there would make every stage depend on them.
SOURCES = {
    "imagefolder": Source(_imagefolder, "a tree with train/<class>/ and val/<class>/ folders"),
    "imagenet100": Source(_imagenet100, "the ImageNet-1k root (train/<wnid>/, val/)"),
    "imagenet_val": Source(_imagenet_val, "the ImageNet-1k root (only its val/ is read)"),
    "probe_folder": Source(_probe_folder, "a folder of images (in class subfolders for labels)"),
}


def list_source(cfg):
    """({split: [(path, class name or None), ...]}, classes) of the source that prepare.source names."""
    source = SOURCES[cfg["source"]]
    if not cfg["path"]:
        raise TGOError(f"prepare.path is not set; point it at {source.path_help}")
    return source.list_files(cfg)
