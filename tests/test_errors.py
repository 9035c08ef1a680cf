"""Bad params and inputs: each stage exits 2 with one line `tgo <stage>: error: ...` on stderr that
names the param or file, no traceback, and writes nothing (its upstream outputs may exist).

The stages after prepare fail on a copy of a micro workspace in which prepare -> train -> extract
ran once (module fixture), so the expensive stages run a single time.
"""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from micro import micro_config, run_stage, stage_error, stage_ok

# What a stage finds from its upstream stages in a real pipeline.
UPSTREAM = {
    "train": ("data/prepared",),
    "extract": ("data/prepared", "data/checkpoints", "reports/train", "reports/metrics/train.json"),
    "spectral": ("data/prepared", "data/checkpoints", "data/activations", "reports/train",
                 "reports/metrics/train.json"),
}
UPSTREAM["tokens"] = UPSTREAM["correlation"] = UPSTREAM["mi"] = UPSTREAM["qk"] = UPSTREAM["spectral"]
OUTPUTS = {
    "prepare": ("data/prepared",),
    "train": ("data/checkpoints", "reports/train", "reports/metrics/train.json"),
    "extract": ("data/activations",),
    "spectral": ("reports/spectral", "reports/metrics/spectral.json"),
    "tokens": ("reports/tokens", "reports/metrics/tokens.json"),
    "correlation": ("reports/correlation", "reports/metrics/correlation.json"),
    "mi": ("reports/mi", "reports/metrics/mi.json"),
    "qk": ("reports/qk", "reports/metrics/qk.json"),
}


def snapshot(root):
    """Every path under root (files and directories), except params.yaml."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != "params.yaml")


def fails_cleanly(stage, root, params, *needles):
    """Run a stage expected to fail: one-line error naming `needles`, nothing written."""
    root.mkdir(parents=True, exist_ok=True)
    before = snapshot(root)
    line = stage_error(run_stage(stage, root, params), stage, *needles)
    after = snapshot(root)
    assert not sorted(set(after) - set(before)), "the failed stage wrote these"
    assert not sorted(set(before) - set(after)), "the failed stage removed these"
    for out in OUTPUTS[stage]:
        assert not (root / out).exists(), out
    return line


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A micro workspace after prepare -> train -> extract (with the unmodified micro config)."""
    root = tmp_path_factory.mktemp("workspace")
    params = micro_config()
    for stage in ("prepare", "train", "extract"):
        stage_ok(stage, root, params)
    assert (root / "data/checkpoints/config.json").exists()
    assert (root / "data/activations/epoch_002/meta.json").exists()
    return root


def upstream_of(stage, workspace, dst):
    """Copy into dst what `stage` reads from the workspace, and nothing it writes."""
    for rel in UPSTREAM[stage]:
        src, out = workspace / rel, dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, out)
    return dst


def write_png(path, size=(20, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)


def imagefolder(path):
    return micro_config(prepare={"source": "imagefolder", "path": None if path is None else str(path)})


# --- prepare ----------------------------------------------------------------------------------

def test_imagefolder_missing_path(tmp_path):
    missing = tmp_path / "no_such_tree"
    fails_cleanly("prepare", tmp_path / "work", imagefolder(missing),
                  "prepare.path", str(missing))


def test_imagefolder_path_not_set(tmp_path):
    fails_cleanly("prepare", tmp_path, imagefolder(None),
                  "prepare.path")


@pytest.mark.parametrize("content", ["empty", "only_non_images"])
def test_imagefolder_class_folder_without_images(tmp_path, content):
    tree = tmp_path / "tree"
    for split in ("train", "val"):
        for cls in ("a", "b", "c"):
            write_png(tree / split / cls / "0.png")
    hollow = tree / "val" / "b"
    (hollow / "0.png").unlink()
    if content == "only_non_images":
        (hollow / "readme.txt").write_text("no images here")
    fails_cleanly("prepare", tmp_path / "work", imagefolder(tree),
                  "prepare.path", str(hollow))


def test_unknown_prepare_source(tmp_path):
    fails_cleanly("prepare", tmp_path,
                  micro_config(prepare={"source": "imagenet"}), "prepare.source", "imagenet")


# --- train, extract, spectral on a prepared/trained/extracted workspace ----------------------

@pytest.mark.parametrize("overrides, needles", [
    ({"model": {"name": "vit_does_not_exist"}}, ("model.name", "vit_does_not_exist")),
    ({"model": {"patch_size": 5}}, ("model.patch_size", "16")),  # image_size 16
    ({"train": {"epochs": 2, "checkpoint_epochs": [0, 5]}}, ("train.checkpoint_epochs", "5")),
    ({"model": {"img_size": 32}}, ("model.img_size=32", "16")),
], ids=["unknown_model", "patch_size_not_dividing", "checkpoint_beyond_epochs", "img_size_beyond_stored"])
def test_train_bad_params(tmp_path, workspace, overrides, needles):
    root = upstream_of("train", workspace, tmp_path)
    fails_cleanly("train", root, micro_config(**overrides), *needles)
    assert not list(root.rglob("*.safetensors"))


def test_train_nan_loss_stops_with_one_line(tmp_path, workspace):
    root = upstream_of("train", workspace, tmp_path)
    proc = run_stage("train", root, micro_config(train={"lr": 1e30, "clip_grad": 0.0, "warmup_epochs": 0}))
    stage_error(proc, "train", "loss is nan", "train.lr")
    assert not (root / "reports/metrics/train.json").exists()


def test_extract_probe_larger_than_val_split(tmp_path, workspace):
    root = upstream_of("extract", workspace, tmp_path)
    fails_cleanly("extract", root, micro_config(extract={"probe_size": 1000}),
                  "extract.probe_size", "40")  # 4 classes x 10 val images


def test_spectral_alpha_window_outside_spectrum(tmp_path, workspace):
    root = upstream_of("spectral", workspace, tmp_path)
    # probe 32 images, D = 32: the centred matrix has rank at most 31.
    fails_cleanly("spectral", root, micro_config(spectral={"alpha_ranks": [2, 500]}),
                  "spectral.alpha_ranks", "500")


@pytest.mark.parametrize("overrides, needles", [
    ({"cluster_method": "dbscan"}, ("tokens.cluster_method", "dbscan")),
    ({"n_clusters": 100}, ("tokens.n_clusters", "16")),  # a 4x4 patch grid
])
def test_tokens_bad_params(tmp_path, workspace, overrides, needles):
    root = upstream_of("tokens", workspace, tmp_path)
    fails_cleanly("tokens", root, micro_config(tokens=overrides), *needles)


def test_correlation_bad_max_images(tmp_path, workspace):
    root = upstream_of("correlation", workspace, tmp_path)
    fails_cleanly("correlation", root, micro_config(correlation={"max_images": 0}), "correlation.max_images")


@pytest.mark.parametrize("overrides, needles", [
    ({"estimator": "kde"}, ("mi.estimator", "kde")),
    ({"n_channels": 0}, ("mi.n_channels=0", "32")),  # the micro width
    ({"reference": [9, 0]}, ("mi.reference", "4x4")),
    ({"k": 40}, ("mi.k=40", "32 images")),  # the micro probe set
    ({"max_images": 1}, ("mi.k=3", "mi.max_images")),
    ({"n_shuffles": 0}, ("mi.n_shuffles=0",)),
])
def test_mi_bad_params(tmp_path, workspace, overrides, needles):
    root = upstream_of("mi", workspace, tmp_path)
    fails_cleanly("mi", root, micro_config(mi=overrides), *needles)


@pytest.mark.parametrize("overrides", [{"max_images": 0}, {"angle_bins": 1}])
def test_qk_bad_params(tmp_path, workspace, overrides):
    root = upstream_of("qk", workspace, tmp_path)
    fails_cleanly("qk", root, micro_config(qk=overrides), *(f"qk.{k}={v}" for k, v in overrides.items()))


def test_tokens_alpha_window_beyond_rank_is_missing_with_reason(tmp_path, workspace):
    """Unlike spectral, tokens reports alphas it cannot fit as missing, with the reason."""
    root = upstream_of("tokens", workspace, tmp_path)
    stage_ok("tokens", root, micro_config(tokens={"alpha_ranks": [2, 500]}))
    summary = json.loads((root / "reports/metrics/tokens.json").read_text())
    assert "N-1=31" in summary["alpha_missing"]
    assert all(np.isnan(v) for v in summary["mean_alpha"].values())
    assert "coherence" not in summary
