"""prepare sources imagenet100 and imagenet_val on a small fake ImageNet-1k tree of real JPEGs:
three CMC wnids (plus one class that is not listed), both val layouts, a corrupt file, a missing
class; imagenet_val without train/. (The decoder they share with every source of image files, and
its resume, are tested in test_data.py.)"""
import json
import re
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from micro import compose, micro_config, run_stage, stage_error, stage_ok
from tgo import imagenet
from tgo.data import decode_split
from tgo.params import validate

SIZE = 16
WNIDS = ["n02869837", "n01749939", "n02488291"]  # the first three of the CMC list
OTHER = "n01440764"  # in ImageNet-1k, not in ImageNet-100
COLOURS = {WNIDS[0]: (220, 30, 30), WNIDS[1]: (30, 220, 30), WNIDS[2]: (30, 30, 220), OTHER: (128, 128, 128)}
TRAIN = {WNIDS[0]: 3, WNIDS[1]: 4, WNIDS[2]: 5, OTHER: 2}
VAL = {WNIDS[0]: 2, WNIDS[1]: 1, WNIDS[2]: 3, OTHER: 1}
CORRUPT = f"train/{WNIDS[1]}/{WNIDS[1]}_corrupt.JPEG"


def jpeg(path, wnid, i):
    rng = np.random.default_rng(i)
    h, w = 20 + 7 * (i % 3), 24 + 5 * (i % 4)  # non-square, various sizes
    rgb = np.clip(np.array(COLOURS[wnid]) + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, "JPEG", quality=95)


def build(root, flat_val):
    for wnid, n in TRAIN.items():
        for i in range(n):
            jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", wnid, i)
    (root / CORRUPT).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows, k = [], 0
    for wnid, n in VAL.items():
        for i in range(n):
            k += 1
            name = f"ILSVRC2012_val_{k:08d}"
            if flat_val:
                jpeg(root / "val" / f"{name}.JPEG", wnid, 100 + i)
                rows.append(f"{name},{wnid} 1 2 30 40 {wnid} 3 4 20 10")
            else:
                jpeg(root / "val" / wnid / f"{name}.JPEG", wnid, 100 + i)
    if flat_val:
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    (root / "classes.txt").write_text("\n".join(WNIDS) + "\n")
    return root


def params(root, **prepare):
    return micro_config(prepare={"source": "imagenet100", "path": str(root), "image_size": SIZE,
                                 "class_list": str(root / "classes.txt"), "workers": 2, **prepare})


def prepared(work):
    out = work / "data" / "prepared"
    manifest = json.loads((out / "manifest.json").read_text())
    arrays = {s: (np.load(out / f"{s}_images.npy"), np.load(out / f"{s}_labels.npy")) for s in ("train", "val")}
    return arrays, manifest


@pytest.fixture(scope="module", params=["folders", "flat"])
def run(request, tmp_path_factory):
    root = build(tmp_path_factory.mktemp(f"imagenet_{request.param}"), request.param == "flat")
    work = tmp_path_factory.mktemp("work")
    proc = stage_ok("prepare", work, params(root))
    return (*prepared(work), proc, work)


def test_keeps_the_listed_classes_with_their_counts(run):
    arrays, manifest, _, _ = run
    assert manifest["classes"] == sorted(WNIDS) and manifest["source"] == "imagenet100"
    train = {w: TRAIN[w] for w in WNIDS}  # the corrupt file (an extra one) is not counted
    assert manifest["splits"]["train"]["per_class"] == train
    assert manifest["splits"]["val"]["per_class"] == {w: VAL[w] for w in WNIDS}
    for split, counts in (("train", train), ("val", VAL)):
        images, labels = arrays[split]
        assert images.shape == (sum(counts[w] for w in WNIDS), SIZE, SIZE, 3) and images.dtype == np.uint8
        assert np.bincount(labels).tolist() == [counts[w] for w in sorted(WNIDS)]


def test_labels_match_pixels(run):
    arrays, manifest, _, _ = run
    for images, labels in arrays.values():
        dominant = images.reshape(len(images), -1, 3).mean(axis=1).argmax(axis=1)
        assert dominant.tolist() == [int(np.argmax(COLOURS[manifest["classes"][y]])) for y in labels]


def test_corrupt_jpeg_is_listed_and_skipped(run):
    _, manifest, proc, work = run
    assert [b["path"].endswith(CORRUPT) for b in manifest["bad_images"]] == [True]
    assert "1 unreadable images skipped" in proc.stdout
    assert not (work / "data" / "prepare-work").exists()  # the work directory is gone when done


def test_both_val_layouts_give_the_same_arrays(tmp_path):
    a = build(tmp_path / "folders", flat_val=False)
    b = build(tmp_path / "flat", flat_val=True)
    stage_ok("prepare", tmp_path / "wa", params(a))
    stage_ok("prepare", tmp_path / "wb", params(b))
    (xa, ma), (xb, mb) = prepared(tmp_path / "wa"), prepared(tmp_path / "wb")
    for split in ("train", "val"):
        assert ma["splits"][split]["sha256"] == mb["splits"][split]["sha256"]
        np.testing.assert_array_equal(xa[split][0], xb[split][0])


def test_missing_class_is_an_error_naming_the_wnid(tmp_path):
    root = build(tmp_path / "tree", flat_val=False)
    (root / "classes.txt").write_text("\n".join(WNIDS + ["n09999999"]))
    proc = run_stage("prepare", tmp_path / "work", params(root))
    stage_error(proc, "prepare", "n09999999", "prepare.path")
    assert not (tmp_path / "work" / "data" / "prepared").exists()


def test_flat_val_without_csv_is_an_error(tmp_path):
    root = build(tmp_path / "tree", flat_val=True)
    (root / "LOC_val_solution.csv").unlink()
    stage_error(run_stage("prepare", tmp_path / "work", params(root)), "prepare", "prepare.val_csv",
                "LOC_val_solution.csv")


def test_corrupt_file_with_on_bad_image_error(tmp_path):
    root = build(tmp_path / "tree", flat_val=False)
    proc = run_stage("prepare", tmp_path / "work", params(root, on_bad_image="error"))
    stage_error(proc, "prepare", "_corrupt.JPEG", "on_bad_image")
    assert not (tmp_path / "work" / "data" / "prepared").exists()


def test_shipped_class_list_is_imagenet100():
    wnids = imagenet.read_class_list()
    assert len(wnids) == len(set(wnids)) == 100
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)


# --- imagenet_val: the val split alone, for probe images -----------------------------------------

ALL = sorted(VAL)  # every class of the fake val/, OTHER included


def val_only(root, flat_val):
    """The fake tree without train/: imagenet_val must not need it."""
    build(root, flat_val)
    shutil.rmtree(root / "train")
    return root


def pixel_classes(images):
    return images.reshape(len(images), -1, 3).mean(axis=1).argmax(axis=1).tolist()


@pytest.mark.parametrize("flat", [False, True], ids=["folders", "flat"])
def test_imagenet_val_lists_every_class_present(tmp_path, flat):
    root = val_only(tmp_path / "tree", flat)
    items, classes = imagenet.list_imagenet_val(root)
    assert classes == ALL  # sorted: for all 1000 classes, timm's ImageNet-1k order
    assert [w for _, w in items] == [w for w in ALL for _ in range(VAL[w])]
    assert all(p.parent == (root / "val" if flat else root / "val" / w) for p, w in items)


def test_imagenet_val_flat_reads_the_csv_given_by_val_csv(tmp_path):
    root = val_only(tmp_path / "tree", flat_val=True)
    csv = (root / "LOC_val_solution.csv").rename(tmp_path / "elsewhere.csv")
    with pytest.raises(imagenet.TGOError, match="prepare.val_csv"):
        imagenet.list_imagenet_val(root)
    _, classes = imagenet.list_imagenet_val(root, val_csv=csv)
    assert classes == ALL


@pytest.mark.parametrize("flat", [False, True], ids=["folders", "flat"])
def test_imagenet_val_class_list_keeps_only_those(tmp_path, flat):
    root = val_only(tmp_path / "tree", flat)
    items, classes = imagenet.list_imagenet_val(root, sorted(WNIDS))
    assert classes == sorted(WNIDS) and OTHER not in {w for _, w in items}
    assert len(items) == sum(VAL[w] for w in WNIDS)


@pytest.mark.parametrize("flat", [False, True], ids=["folders", "flat"])
def test_imagenet_val_listed_class_without_images_is_an_error(tmp_path, flat):
    root = val_only(tmp_path / "tree", flat)
    with pytest.raises(imagenet.TGOError, match="n09999999") as e:
        imagenet.list_imagenet_val(root, sorted(WNIDS) + ["n09999999"])
    assert "\n" not in str(e.value) and "prepare.class_list" in str(e.value)


def test_imagenet_val_decodes_labels_that_match_pixels(tmp_path):
    root = val_only(tmp_path / "tree", flat_val=True)
    items, classes = imagenet.list_imagenet_val(root, sorted(WNIDS))  # OTHER is grey: no dominant channel
    npy, labels, bad = decode_split(items, classes, SIZE, 24, tmp_path / "work", "val", 2, "skip")
    images = np.load(npy)
    assert bad == [] and images.shape == (sum(VAL[w] for w in WNIDS), SIZE, SIZE, 3)
    assert pixel_classes(images) == [int(np.argmax(COLOURS[classes[y]])) for y in labels]


def test_imagenet_val_stage_writes_a_val_split_only(tmp_path):
    root = val_only(tmp_path / "tree", flat_val=False)
    proc = stage_ok("prepare", tmp_path / "work", params(root, source="imagenet_val", class_list=None))
    out = tmp_path / "work" / "data" / "prepared"
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "val_images.npy", "val_labels.npy"]
    assert manifest["source"] == "imagenet_val" and manifest["classes"] == ALL
    assert list(manifest["splits"]) == ["val"] and manifest["splits"]["val"]["per_class"] == VAL
    assert np.load(out / "val_images.npy").shape == (sum(VAL.values()), SIZE, SIZE, 3)
    assert f"{len(ALL)} classes, val {sum(VAL.values())} images" in proc.stdout


def test_imagenet_val_stage_error_names_the_missing_class(tmp_path):
    root = val_only(tmp_path / "tree", flat_val=True)
    (root / "classes.txt").write_text("\n".join(WNIDS + ["n09999999"]))
    proc = run_stage("prepare", tmp_path / "work", params(root, source="imagenet_val"))
    stage_error(proc, "prepare", "n09999999", "prepare.class_list")
    assert not (tmp_path / "work" / "data" / "prepared").exists()


def test_imagenet_val_preset():
    p = yaml.safe_load(compose(["data=imagenet_val", "prepare.path=/data/imagenet"]))
    prepare = validate("prepare", p["prepare"])
    assert (prepare["source"], prepare["resize"], prepare["image_size"]) == ("imagenet_val", 256, 256)
    assert (p["extract"]["probe_size"], p["mi"]["n_channels"], p["mi"]["max_images"]) == (1000, 64, 1000)
