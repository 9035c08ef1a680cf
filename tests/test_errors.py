"""Bad input that only the data can reveal (a missing image tree, a probe set larger than the val
split, a window beyond the spectrum's rank, ...): each stage exits 2 with one line
`tgo <stage>: error: ...` on stderr that names the param or file, no traceback, and writes or
deletes nothing. Bad values as such are in test_params.py."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from micro import ENV, REPO, fails_before_writing, micro_config, run_stage, snapshot, stage_error, stage_ok
from tgo.io import TGOError, require_free_space, size_text


def fails_cleanly(stage, root, params, *needles):
    """Run a stage in a subprocess, expecting a one-line error naming `needles` and nothing written."""
    root.mkdir(parents=True, exist_ok=True)
    before = sorted(root.rglob("*"))
    line = stage_error(run_stage(stage, root, params), stage, *needles)
    assert sorted(p for p in root.rglob("*") if p.name != "params.yaml") == \
        [p for p in before if p.name != "params.yaml"], "the failed stage wrote or removed files"
    return line


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


# --- the later stages, in this process on the shared micro workspace --------------------------

@pytest.mark.parametrize("stage, overrides, needles", [
    ("train", {"model": {"name": "vit_does_not_exist"}}, ("model.name", "vit_does_not_exist")),
    ("train", {"model": {"patch_size": 5}}, ("model.patch_size=5", "16")),  # image_size 16
    ("train", {"model": {"img_size": 32}}, ("model.img_size=32", "16")),
    ("train", {"train": {"batch_size": 1000}}, ("train.batch_size=1000", "80 images")),  # 4 classes x 20
    ("train", {"model": {"weights": "/nonexistent/w.safetensors"}}, ("model.weights", "does not exist")),
    ("extract", {"extract": {"probe_size": 1000}}, ("extract.probe_size", "40")),  # 4 classes x 10 val images
    # probe 32 images in 20 jackknife groups: a replicate keeps 30 (rank 29); 3 ranks from 28 do not fit.
    ("spectral", {"spectral": {"alpha_ranks": [28, 500]}}, ("spectral.alpha_ranks", "up to 29", "probe_size")),
    ("tokens", {"tokens": {"alpha_ranks": [28, 500]}}, ("tokens.alpha_ranks", "up to 29", "probe_size")),
    ("tokens", {"tokens": {"n_clusters": 100}}, ("tokens.n_clusters", "16")),  # a 4x4 patch grid
    ("mi", {"mi": {"n_channels": 33}}, ("mi.n_channels=33", "32")),  # the micro width
    ("mi", {"mi": {"reference": [9, 0]}}, ("mi.reference", "4x4")),
    ("mi", {"mi": {"k": 40}}, ("mi.k=40", "32 images")),  # the micro probe set
], ids=["unknown_model", "patch_size_not_dividing", "img_size_beyond_stored", "batch_beyond_split",
        "weights_missing", "probe_beyond_val", "alpha_window_beyond_rank", "token_alpha_window_beyond_rank",
        "clusters_beyond_patches",
        "channels_beyond_width", "reference_outside_grid", "k_beyond_images"])
def test_data_dependent_errors(workspace, capsys, stage, overrides, needles):
    fails_before_writing(stage, workspace, micro_config(**overrides), capsys, *needles)


def upstream(workspace, dst, paths):
    for rel in paths:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (workspace / rel).is_dir() else shutil.copy2)(workspace / rel, dst / rel)
    return dst


def test_train_nan_loss_stops_with_one_line_and_keeps_the_last_logs(tmp_path, workspace):
    # The last run's DVCLive logs stay as they were: the failed run's epochs never reach them.
    root = upstream(workspace, tmp_path, ["data/prepared", "reports/train"])
    before = snapshot(root / "reports/train")
    proc = run_stage("train", root, micro_config(train={"lr": 1e30, "clip_grad": 0.0, "warmup_epochs": 0}))
    stage_error(proc, "train", "loss is nan", "train.lr")
    assert not (root / "reports/metrics/train.json").exists()
    assert snapshot(root / "reports/train") == before and before
    assert not list((root / "reports").glob(".*tmp*"))


def test_a_zoo_model_that_fails_leaves_no_empty_folder(tmp_path, workspace):
    # `dvc exp run -S "+zoo.bad={name:vit_nope}"` creates data/zoo/bad/ before the stage runs.
    root = upstream(workspace, tmp_path, ["data/prepared"])
    (root / "data/zoo/bad").mkdir(parents=True)
    params = {**micro_config(), "zoo": {"bad": {"name": "vit_nope", "weights": None}}}
    stage_error(run_stage("zoo_model", root, params, ["--zoo", "bad"]), "zoo_model", "zoo.bad.name", "vit_nope")
    assert not (root / "data/zoo").exists()


@pytest.mark.parametrize("stage", ["spectral", "tokens"])
def test_alpha_window_beyond_a_small_probe_set_comes_down_with_a_note(tmp_path, workspace, stage):
    """32 probe images in 20 jackknife groups: a replicate keeps 30 images, rank 29, so [2, 500]
    is fitted over 2..29 (with intervals), and the stage says so."""
    root = upstream(workspace, tmp_path, ["data/activations"])
    proc = stage_ok(stage, root, micro_config(**{stage: {"alpha_ranks": [2, 500]}}))
    assert f"note: {stage}.alpha_ranks=[2, 500] does not fit" in proc.stdout and "ranks 2..29" in proc.stdout
    summary = json.loads((root / f"reports/metrics/{stage}.json").read_text())
    assert summary["alpha_ranks"] == [2, 29]
    if stage == "spectral":
        final = summary["cls"]["final_norm"]
        assert final["alpha_ci_low"] <= final["alpha"] <= final["alpha_ci_high"]
    else:
        assert np.isfinite(list(summary["patch_alpha_mean"].values())).all()


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_truncated_checkpoint_is_named(tmp_path, workspace):
    root = upstream(workspace, tmp_path, ["data/prepared", "data/checkpoints"])
    truncate(root / "data/checkpoints/epoch_001.safetensors")
    proc = run_stage("extract", root, micro_config())
    stage_error(proc, "extract", "data/checkpoints/epoch_001.safetensors", "dvc repro -f -s train")
    assert not (root / "data/activations").exists()


def test_truncated_activations_are_named(tmp_path, workspace):
    root = upstream(workspace, tmp_path, ["data/activations"])
    truncate(root / "data/activations/epoch_002/residual.npy")
    proc = run_stage("spectral", root, micro_config())
    stage_error(proc, "spectral", "data/activations/epoch_002/residual.npy", "dvc repro -f -s extract")


def test_activations_from_an_older_extract_are_named_in_qk(tmp_path, workspace):
    # Before meta.json recorded the attention's layout, qk built the model to learn it.
    root = upstream(workspace, tmp_path, ["data/checkpoints", "data/activations"])
    for meta in (root / "data/activations").glob("epoch_*/meta.json"):
        meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "attention"}))
    proc = run_stage("qk", root, micro_config())
    stage_error(proc, "qk", "data/activations/epoch_000/meta.json", "dvc repro -f -s extract")
    assert not (root / "reports").exists()


def test_truncated_resume_state_is_discarded_and_training_restarts(tmp_path, workspace):
    root = upstream(workspace, tmp_path, ["data/prepared"])
    (root / "data/train-work").mkdir(parents=True)
    (root / "data/train-work/resume.pt").write_bytes(b"PK\x03\x04 a torch.save archive cut short")
    proc = stage_ok("train", root, micro_config())
    assert "data/train-work/resume.pt" in proc.stdout and "restarts from scratch" in proc.stdout
    for name in ("epoch_000", "epoch_001", "epoch_002"):  # the same run as one never interrupted
        assert (root / f"data/checkpoints/{name}.safetensors").read_bytes() == \
            (workspace / f"data/checkpoints/{name}.safetensors").read_bytes()


def test_scratch_of_a_killed_extract_is_removed_by_the_next_run(tmp_path, workspace):
    root = upstream(workspace, tmp_path, ["data/prepared", "data/checkpoints"])
    with open(root / "params.yaml", "w") as f:
        yaml.safe_dump(micro_config(), f, sort_keys=False)
    proc = subprocess.Popen([sys.executable, str(REPO / "stages" / "extract.py")], cwd=root, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = root / "data/extract-work"
    deadline = time.time() + 120
    while not list(work.glob(".epoch_*.tmp*")) and time.time() < deadline:  # a checkpoint half-written
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert list(work.glob(".epoch_*.tmp*")), "extract finished before it could be killed"
    stage_ok("extract", root)
    assert not work.exists() and not list((root / "data").glob(".activations.tmp*"))
    assert (root / "data/activations/epoch_002/meta.json").exists()


def test_disk_space_is_checked_up_front(tmp_path):
    with pytest.raises(TGOError, match=r"needs 1000000.0 GB free"):
        require_free_space(tmp_path / "out", 10**15)
    require_free_space(tmp_path / "out", 1)


def test_sizes_read_in_the_unit_that_shows_them():
    assert [size_text(n) for n in (1.5e9, 3e8, 12_000, 300)] == ["1.5 GB", "300.0 MB", "12.0 kB", "0.3 kB"]


@pytest.fixture
def small_disk(tmp_path):
    """A filesystem of its own (a 4 MB tmpfs) that a test can fill or make read-only; skipped
    where mounting needs privileges this process lacks."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_during_training_is_one_line_and_the_rerun_is_the_same(small_disk, workspace):
    """Room for two checkpoints but not for the resume state after epoch 1 (model and optimizer):
    torch.save fills the disk. One line naming the file, no scratch left; with the space freed the
    same command trains the same weights."""
    root = upstream(workspace, small_disk / "project", ["data/prepared"])
    checkpoint = (workspace / "data/checkpoints/epoch_000.safetensors").stat().st_size
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - int(2.5 * checkpoint)))
    line = stage_error(run_stage("train", root, micro_config()), "train", "data/train-work/resume.pt",
                       "no space left", "free some space")
    assert "tmp" not in line and not list(root.glob("data/**/.*.tmp*"))
    filler.unlink()
    stage_ok("train", root)
    for name in ("epoch_000", "epoch_001", "epoch_002"):
        assert (root / f"data/checkpoints/{name}.safetensors").read_bytes() == \
            (workspace / f"data/checkpoints/{name}.safetensors").read_bytes()


@pytest.mark.parametrize("stage, inputs, needle", [
    ("prepare", [], "data/prepared"),
    ("train", ["data/prepared"], "data/.train.lock"),
    ("extract", ["data/prepared", "data/checkpoints"], "data/extract-work"),
])
def test_a_read_only_data_folder_is_one_line(small_disk, workspace, stage, inputs, needle):
    root = small_disk.parent / "project"
    for rel in inputs:
        shutil.copytree(workspace / rel, small_disk / Path(rel).name)
    root.mkdir()
    (root / "data").symlink_to(small_disk)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    stage_error(run_stage(stage, root, micro_config()), stage, needle, "cannot write", "writable")


def test_a_second_trainer_stops_while_the_first_runs(tmp_path, workspace):
    # A `dvc` killed during train leaves the trainer running; the next run must not train into the
    # same folder at the same time.
    root = upstream(workspace, tmp_path, ["data/prepared"])
    params = micro_config(prepare={}, train={"epochs": 200})
    with open(root / "params.yaml", "w") as f:
        yaml.safe_dump(params, f, sort_keys=False)
    first = subprocess.Popen([sys.executable, str(REPO / "stages" / "train.py")], cwd=root, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (root / "data/train-work/resume.pt").exists() and time.time() < deadline:
            time.sleep(0.01)
        stage_error(run_stage("train", root, params), "train", "data/train-work", f"pid {first.pid}")
        assert first.poll() is None, "the first trainer was disturbed"
    finally:
        first.kill()
        first.wait()
    stage_error(run_stage("train", root, micro_config(train={"eval_batch_size": 0})), "train", "eval_batch_size")
    proc = stage_ok("train", root, micro_config(train={"epochs": 1, "checkpoint_epochs": [0, 1]}))
    assert "final val top-1" in proc.stdout  # the dead trainer's lock is taken over
