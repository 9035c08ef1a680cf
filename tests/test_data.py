"""The prepare stage, run as a subprocess in a temporary directory: the synthetic default,
image-folder trees and probe folders, checked through what it writes to data/prepared/; the table
of sources and the one decoder of image files (its resume)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from micro import micro_config, run_stage, stage_error, stage_ok
from tgo import data
from tgo.data import decode_split, list_imagefolder, list_probe_folder, load_image, load_prepared, write_prepared
from tgo.io import TGOError
from tgo.params import SCHEMA, validate
from tgo.sources import SOURCES, list_source

SPLITS = ("train", "val")
SIZE = 16


def read_prepared(root):
    """{split: (images, labels)} and the manifest of root/data/prepared."""
    prepared = root / "data" / "prepared"
    arrays = {s: (np.load(prepared / f"{s}_images.npy"), np.load(prepared / f"{s}_labels.npy"))
              for s in SPLITS}
    return arrays, json.loads((prepared / "manifest.json").read_text())


# --- synthetic default ------------------------------------------------------------------------

NUM_CLASSES, PER_CLASS = 4, {"train": 20, "val": 10}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The prepare stage run three times: seed 0 twice (in separate directories, on 3 threads and on
    1), seed 1 once."""
    runs = {}
    for name, seed, workers in (("a", 0, 3), ("b", 0, 1), ("other_seed", 1, None)):
        root = tmp_path_factory.mktemp(f"synthetic_{name}")
        stage_ok("prepare", root, micro_config(prepare={"seed": seed, "workers": workers}))
        runs[name] = root
    return runs


def test_synthetic_same_seed_gives_identical_bytes_on_any_number_of_threads(synthetic):
    a, b = synthetic["a"] / "data/prepared", synthetic["b"] / "data/prepared"
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    for split in SPLITS:
        assert ma["splits"][split]["sha256"] == mb["splits"][split]["sha256"]
        for kind in ("images", "labels"):
            assert (a / f"{split}_{kind}.npy").read_bytes() == (b / f"{split}_{kind}.npy").read_bytes()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_all_cores_means_the_cores_this_process_may_run_on():
    """prepare.workers: null (and the tokens stage's threads) count the affinity mask that taskset,
    Slurm or a container sets, not the machine's cores."""
    code = ("import os; from tgo.io import usable_cpus; "
            "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); print(usable_cpus())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


def test_synthetic_different_seed_gives_different_data(synthetic):
    (arrays, manifest), (other, other_manifest) = (read_prepared(synthetic[k]) for k in ("a", "other_seed"))
    for split in SPLITS:
        assert manifest["splits"][split]["sha256"] != other_manifest["splits"][split]["sha256"]
        assert not np.array_equal(arrays[split][0], other[split][0])


def test_synthetic_val_images_do_not_repeat_train_images(synthetic):
    arrays, _ = read_prepared(synthetic["a"])
    train = {img.tobytes() for img in arrays["train"][0]}
    val = [img.tobytes() for img in arrays["val"][0]]
    assert len(train) == len(arrays["train"][0]) and len(set(val)) == len(val)
    assert train.isdisjoint(val)


def test_synthetic_classes_are_exactly_balanced(synthetic):
    arrays, manifest = read_prepared(synthetic["a"])
    assert len(manifest["classes"]) == NUM_CLASSES
    for split in SPLITS:
        labels = arrays[split][1]
        assert np.bincount(labels, minlength=NUM_CLASSES).tolist() == [PER_CLASS[split]] * NUM_CLASSES
        assert set(manifest["splits"][split]["per_class"].values()) == {PER_CLASS[split]}
        # Shuffled, not sorted by class.
        assert np.any(np.diff(labels) < 0)


def test_synthetic_shapes_and_dtypes(synthetic):
    arrays, manifest = read_prepared(synthetic["a"])
    for split in SPLITS:
        images, labels = arrays[split]
        n = NUM_CLASSES * PER_CLASS[split]
        assert images.shape == (n, SIZE, SIZE, 3) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        assert labels.min() >= 0 and labels.max() < NUM_CLASSES
        assert images.std() > 10  # real pictures, not a constant fill
    assert manifest["image_size"] == SIZE and manifest["source"] == "synthetic"
    assert manifest["bad_images"] == []


def test_synthetic_manifest_matches_recomputation(synthetic):
    prepared = synthetic["a"] / "data/prepared"
    manifest = json.loads((prepared / "manifest.json").read_text())
    for split in SPLITS:
        images = np.load(prepared / f"{split}_images.npy")
        labels = np.load(prepared / f"{split}_labels.npy")
        h = hashlib.sha256()
        h.update(images.tobytes())
        h.update(labels.tobytes())
        entry = manifest["splits"][split]
        assert entry["sha256"] == h.hexdigest()
        assert entry["count"] == len(labels) == len(images)
        assert entry["per_class"] == {c: int((labels == i).sum()) for i, c in enumerate(manifest["classes"])}


# --- image folders ----------------------------------------------------------------------------

# Created in this (unsorted) order; each class has its own colour so labels can be checked
# against pixel content.
COLOURS = {"zebra": (220, 25, 25), "apple": (25, 220, 25), "mango": (25, 25, 220)}
COUNTS = {"train": {"zebra": 3, "apple": 2, "mango": 4}, "val": {"zebra": 1, "apple": 2, "mango": 1}}
# (file suffix, PIL format, mode, (width, height)): PNG and JPEG, non-square, smaller and larger
# than the target size.
VARIANTS = [(".png", "PNG", "RGB", (40, 24)), (".jpg", "JPEG", "RGB", (17, 31)),
            (".png", "PNG", "RGBA", (64, 48)), (".jpeg", "JPEG", "RGB", (23, 50)),
            (".PNG", "PNG", "P", (33, 20)), (".JPG", "JPEG", "RGB", (9, 12))]


def write_image(path, rgb, fmt, mode):
    Image.fromarray(rgb).convert(mode).save(path, fmt)


def build_tree(root):
    rng = np.random.default_rng(0)
    k = 0
    for split, counts in COUNTS.items():
        for cls, n in counts.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                suffix, fmt, mode, (w, h) = VARIANTS[k % len(VARIANTS)]
                k += 1
                noise = rng.integers(-20, 21, size=(h, w, 3))
                rgb = np.clip(np.array(COLOURS[cls]) + noise, 0, 255).astype(np.uint8)
                write_image(d / f"img{i}{suffix}", rgb, fmt, mode)
    (root / "train" / "apple" / "notes.txt").write_text("not an image: ignored, not a bad image")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_tree(tmp_path_factory.mktemp("tree"))


def imagefolder_params(path, **prepare):
    return micro_config(prepare={"source": "imagefolder", "path": str(path), "image_size": SIZE,
                                 **prepare})


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory, tree):
    root = tmp_path_factory.mktemp("imagefolder")
    stage_ok("prepare", root, imagefolder_params(tree))
    return read_prepared(root)


def test_imagefolder_classes_sorted_and_counts_per_split(imagefolder):
    arrays, manifest = imagefolder
    classes = sorted(COLOURS)
    assert manifest["classes"] == classes == ["apple", "mango", "zebra"]
    assert manifest["source"] == "imagefolder"
    assert manifest["bad_images"] == []  # notes.txt is not an image file, so not a bad one
    for split in SPLITS:
        entry = manifest["splits"][split]
        assert entry["per_class"] == COUNTS[split]
        assert entry["count"] == sum(COUNTS[split].values())
        labels = arrays[split][1]
        assert np.bincount(labels, minlength=3).tolist() == [COUNTS[split][c] for c in classes]


def test_imagefolder_images_are_square_uint8(imagefolder):
    arrays, manifest = imagefolder
    assert manifest["image_size"] == SIZE
    for split in SPLITS:
        images, labels = arrays[split]
        assert images.shape == (len(labels), SIZE, SIZE, 3) and images.dtype == np.uint8


def test_imagefolder_labels_match_image_content(imagefolder):
    arrays, manifest = imagefolder
    channel = {i: int(np.argmax(COLOURS[c])) for i, c in enumerate(manifest["classes"])}
    for split in SPLITS:
        images, labels = arrays[split]
        dominant = images.reshape(len(images), -1, 3).mean(axis=1).argmax(axis=1)
        assert dominant.tolist() == [channel[int(y)] for y in labels]


def test_imagefolder_pixels_are_load_image_of_each_file(tree, imagefolder):
    # The stage decodes in worker processes into a memory map; each row must be what load_image
    # gives for that file here, in the order of the sorted class folders and file names.
    arrays, _ = imagefolder
    for split in SPLITS:
        files = [(p, i) for i, cls in enumerate(sorted(COLOURS)) for p in sorted((tree / split / cls).iterdir())
                 if p.suffix != ".txt"]
        images, labels = arrays[split]
        assert labels.tolist() == [i for _, i in files]
        np.testing.assert_array_equal(images, np.stack([load_image(p, SIZE) for p, _ in files]))


def test_imagefolder_resizes_shorter_side_then_centre_crops(tmp_path):
    # Black | white | black thirds along the long side: a centre crop keeps the white third,
    # a squash to SIZE x SIZE would keep the black thirds too (mean ~85).
    wide = np.zeros((30, 90, 3), np.uint8)
    wide[:, 30:60] = 255
    for split, name, img, fmt in (("train", "wide.png", wide, "PNG"),
                                  ("train", "tall.png", wide.transpose(1, 0, 2), "PNG"),
                                  ("val", "wide.jpg", wide, "JPEG")):
        (tmp_path / "tree" / split / "only").mkdir(parents=True, exist_ok=True)
        write_image(tmp_path / "tree" / split / "only" / name, img, fmt, "RGB")
    stage_ok("prepare", tmp_path / "work", imagefolder_params(tmp_path / "tree"))
    arrays, _ = read_prepared(tmp_path / "work")
    for split in SPLITS:
        for img in arrays[split][0]:
            assert img.shape == (SIZE, SIZE, 3)
            assert img.mean() > 200
            assert (img > 200).all(axis=-1).mean() > 0.85


def test_a_16_bit_grayscale_png_keeps_its_grey_level(tmp_path):
    # 40000 of 65535 is 156 of 255 (40000 / 257 = 155.6), not white: PIL's convert("RGB") clips a
    # 16-bit image at 255. Three levels along a row stay in order.
    levels = np.array([[10000, 40000, 60000]], np.uint16).repeat(3, axis=0)
    (tmp_path / "tree").mkdir()
    Image.fromarray(levels).save(tmp_path / "tree" / "grey16.png")
    assert Image.open(tmp_path / "tree" / "grey16.png").mode.startswith("I")
    img = load_image(tmp_path / "tree" / "grey16.png", 3)
    assert (img == img[..., :1]).all()  # grey: the same value in every channel
    assert img[1, :, 0].tolist() == [round(v / 257) for v in (10000, 40000, 60000)] == [39, 156, 233]


@pytest.fixture(scope="module")
def corrupt_tree(tmp_path_factory, tree):
    root = tmp_path_factory.mktemp("corrupt") / "tree"
    shutil.copytree(tree, root)
    bad = root / "train" / "mango" / "x.jpg"
    bad.write_bytes(np.random.default_rng(1).bytes(2000))
    return root, bad


def test_corrupt_image_is_skipped_and_listed(tmp_path, corrupt_tree):
    root, bad = corrupt_tree
    stage_ok("prepare", tmp_path, imagefolder_params(root, on_bad_image="skip"))
    arrays, manifest = read_prepared(tmp_path)
    assert [entry["path"] for entry in manifest["bad_images"]] == [str(bad)]
    assert manifest["bad_images"][0]["reason"]
    assert manifest["splits"]["train"]["per_class"] == COUNTS["train"]
    assert len(arrays["train"][1]) == sum(COUNTS["train"].values())


def test_corrupt_image_with_on_bad_image_error_fails(tmp_path, corrupt_tree):
    root, bad = corrupt_tree
    proc = run_stage("prepare", tmp_path, imagefolder_params(root, on_bad_image="error"))
    stage_error(proc, "prepare", str(bad), "prepare.on_bad_image")
    assert not (tmp_path / "data" / "prepared").exists()  # data/prepare-work keeps what was decoded


def test_a_split_without_one_readable_image_is_an_error(tmp_path):
    items = [(tmp_path / f"{i}.png", None) for i in range(3)]
    for path, _ in items:
        path.write_bytes(b"not a png")
    with pytest.raises(TGOError, match="prepare.path: no readable images in the val split"):
        decode_split(items, [], SIZE, None, tmp_path / "work", "val", 2, "skip")


def test_decoding_resumes_from_saved_chunks(tmp_path, monkeypatch, tree):
    monkeypatch.setattr(data, "CHUNK", 2)
    items = list_imagefolder(tree)[0]["train"]  # 9 images, 5 chunks, all readable
    classes = sorted(COLOURS)
    work = tmp_path / "work"
    npy, labels, bad = decode_split(items, classes, SIZE, None, work, "train", 2, "skip")
    full = np.load(npy).copy()
    assert bad == [] and len(labels) == len(items)
    # As if killed after the first chunk: rows 0-1 marked done (and set to a marker that a
    # re-decode would overwrite), the rest not done.
    state = json.loads((work / "train_state.json").read_text())
    state["done"] = [0]
    (work / "train_state.json").write_text(json.dumps(state))
    images = np.load(npy, mmap_mode="r+")
    images[:2], images[2:] = 7, 0
    images.flush()
    del images
    npy, labels2, _ = decode_split(items, classes, SIZE, None, work, "train", 2, "skip")
    again = np.load(npy)
    assert (again[:2] == 7).all()  # the saved chunk was not decoded again
    np.testing.assert_array_equal(again[2:], full[2:])
    np.testing.assert_array_equal(labels2, labels)


# --- probe folders: a val split alone, labelled by subfolders or unlabelled -------------------------

def build_probes(root, labelled):
    """COLOURS' classes, one or two images each: in class subfolders, or all directly in root."""
    rng = np.random.default_rng(2)
    for k, (cls, colour) in enumerate(COLOURS.items()):
        d = root / cls if labelled else root
        d.mkdir(parents=True, exist_ok=True)
        for i in range(1 + k % 2):
            suffix, fmt, mode, (w, h) = VARIANTS[(2 * k + i) % len(VARIANTS)]
            rgb = np.clip(np.array(colour) + rng.integers(-20, 21, size=(h, w, 3)), 0, 255).astype(np.uint8)
            write_image(d / f"{cls}{i}{suffix}", rgb, fmt, mode)
    (root / "README.txt").write_text("not an image: ignored")
    return root


def probe_params(path, **prepare):
    return micro_config(prepare={"source": "probe_folder", "path": str(path), "image_size": SIZE,
                                 "workers": 2, **prepare})


def test_probe_folder_labels_are_the_sorted_subfolders(tmp_path):
    root = build_probes(tmp_path / "probes", labelled=True)
    (root / ".hidden").mkdir()  # e.g. .ipynb_checkpoints: not a class
    items, classes = list_probe_folder(root)
    assert classes == ["apple", "mango", "zebra"]
    assert [(p.parent.name, c) for p, c in items] == [("apple", "apple"), ("apple", "apple"),
                                                      ("mango", "mango"), ("zebra", "zebra")]


def test_probe_folder_labelled_stage_writes_a_val_split_only(tmp_path):
    stage_ok("prepare", tmp_path / "work", probe_params(build_probes(tmp_path / "probes", labelled=True)))
    prepared = tmp_path / "work" / "data" / "prepared"
    images, labels, manifest = load_prepared(prepared, "val")
    assert sorted(p.name for p in prepared.iterdir()) == ["manifest.json", "val_images.npy", "val_labels.npy"]
    assert manifest["source"] == "probe_folder" and list(manifest["splits"]) == ["val"]
    assert manifest["splits"]["val"]["per_class"] == {"apple": 2, "mango": 1, "zebra": 1}
    assert images.shape == (4, SIZE, SIZE, 3) and labels.tolist() == [0, 0, 1, 2]
    dominant = images.reshape(len(images), -1, 3).mean(axis=1).argmax(axis=1)
    assert dominant.tolist() == [int(np.argmax(COLOURS[manifest["classes"][y]])) for y in labels]


def test_probe_folder_without_subfolders_is_unlabelled(tmp_path):
    root = build_probes(tmp_path / "probes", labelled=False)
    items, classes = list_probe_folder(root)
    assert classes == [] and len(items) == 4 and {c for _, c in items} == {None}
    npy, labels, bad = decode_split(items, classes, SIZE, None, tmp_path / "work", "val", 2, "skip")
    assert bad == [] and labels.tolist() == [-1] * 4 and labels.dtype == np.int64
    images = np.load(npy)
    (tmp_path / "out").mkdir()
    manifest = write_prepared(tmp_path / "out", {"val": (images, labels)}, classes, "probe_folder")
    assert manifest["classes"] == [] and manifest["splits"]["val"]["per_class"] == {}
    assert manifest["splits"]["val"]["count"] == 4


def test_probe_folder_unlabelled_stage_and_no_train_split(tmp_path):
    proc = stage_ok("prepare", tmp_path / "work", probe_params(build_probes(tmp_path / "probes", labelled=False)))
    prepared = tmp_path / "work" / "data" / "prepared"
    images, labels, manifest = load_prepared(prepared, "val")
    assert manifest["classes"] == [] and labels.tolist() == [-1] * 4 and images.shape == (4, SIZE, SIZE, 3)
    assert "unlabelled, val 4 images" in proc.stdout
    with pytest.raises(TGOError) as e:
        load_prepared(prepared, "train")
    message = str(e.value)
    assert "\n" not in message
    for needle in ("has no train split", "prepare.source=probe_folder", "model.weights"):
        assert needle in message


def test_probe_folder_with_files_and_subfolders_is_an_error(tmp_path):
    root = build_probes(tmp_path / "probes", labelled=True)
    write_image(root / "loose.png", np.zeros((8, 8, 3), np.uint8), "PNG", "RGB")
    proc = run_stage("prepare", tmp_path / "work", probe_params(root))
    stage_error(proc, "prepare", "prepare.path", str(root), "both image files and subfolders")
    assert not (tmp_path / "work" / "data").exists()


@pytest.mark.parametrize("case", ["empty", "missing", "empty_class"])
def test_probe_folder_without_images_is_an_error(tmp_path, case):
    root = tmp_path / "probes"
    if case != "missing":
        root.mkdir()
        (root / "notes.txt").write_text("not an image")
    if case == "empty_class":
        (root / "apple").mkdir()
    with pytest.raises(TGOError, match="prepare.path") as e:
        list_probe_folder(root)
    assert str(root) in str(e.value) and "\n" not in str(e.value)


# --- the table of sources -----------------------------------------------------------------------

def test_every_source_is_a_choice_of_prepare_source():
    base = micro_config()["prepare"]
    assert SCHEMA["prepare"]["source"].choices == ("synthetic", *SOURCES)
    for name in ("synthetic", *SOURCES):
        assert validate("prepare", {**base, "source": name})["source"] == name
    with pytest.raises(TGOError) as e:
        validate("prepare", {**base, "source": "imagenet_train"})
    assert str(e.value).startswith("prepare.source=imagenet_train: must be one of synthetic, ")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", SOURCES)
def test_a_source_without_a_path_names_what_it_must_point_at(name):
    with pytest.raises(TGOError) as e:
        list_source({**micro_config()["prepare"], "source": name, "path": None})
    assert str(e.value) == f"prepare.path is not set; point it at {SOURCES[name].path_help}"
