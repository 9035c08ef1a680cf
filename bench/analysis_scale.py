"""Benchmark: every analysis stage at the ImageNet-100 preset's shape, each stage's time and peak memory.

Builds a workspace with the preset's params (`data=imagenet100 model=vit_small_patch16`, as
`dvc exp run -S` composes them), a synthetic probe set of the preset's shape (1,000 val images in
10 classes, stored at 256 px), a randomly initialised ViT-S/16 as the one checkpoint, then runs the real
stage scripts in it, one process each: extract (1,000 images x 197 tokens x 384 dims x 38 sites,
5.8 GB of float16), spectral, tokens, correlation, mi, qk. One checkpoint is the last one, so
every stage also does its last-checkpoint work (intervals, sample-size curves): the most a
checkpoint costs. Peak memory is each process's maximum resident set (os.wait4), which counts the
pages of the memory-mapped activations it touched.

    python bench/analysis_scale.py                         # build the workspace in a temp dir, run all
    python bench/analysis_scale.py --workdir /tmp/scale    # keep it; a second call reuses its activations
    python bench/analysis_scale.py --workdir /tmp/scale --stages correlation
    python bench/analysis_scale.py --earlier       # also a checkpoint before the last (twice as long),
                                                   # and the time per checkpoint over the preset's schedule
"""
import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from dvc.utils.hydra import compose_and_dump

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tgo.checkpoints import checkpoint_name, import_weights  # noqa: E402
from tgo.distributed import device_name, pick_device  # noqa: E402
from tgo.io import usable_cpus  # noqa: E402
from tgo.models import create_model, model_kwargs  # noqa: E402
from tgo.params import load  # noqa: E402

# The goals per checkpoint on 2 cores: seconds, and 6 GB peak for every stage.
GOALS = {"spectral": 40, "tokens": 30, "correlation": 20, "mi": 60, "qk": 30}
MEMORY_GOAL_GB = 6.0
PRESET = ["data=imagenet100", "model=vit_small_patch16", "prepare.source=synthetic", "prepare.num_classes=10",
          "prepare.train_per_class=1", "prepare.val_per_class=100"]


def build(work):
    """params.yaml of the preset, the prepared synthetic images, a random ViT-S/16 as checkpoint 0."""
    compose_and_dump(str(work / "params.yaml"), str(ROOT / "conf"), None, "config", "", PRESET)
    stage(work, "prepare")
    params = load("model", "prepare", path=work / "params.yaml")
    torch.manual_seed(0)
    kwargs = model_kwargs(params["model"], params["prepare"]["num_classes"], params["prepare"]["image_size"])
    manifest = json.loads((work / "data/prepared/manifest.json").read_text())
    import_weights(create_model(**kwargs), "random initialisation", work / "data/checkpoints", manifest["classes"])


def stage(work, name):
    """Run stages/<name>.py in the workspace: (seconds, peak resident GB, peak anonymous GB). The
    resident set also counts the pages of memory-mapped activations read (file-backed, which the
    kernel can drop); the anonymous part, sampled every 0.1 s, is the memory the stage allocated."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "stages" / f"{name}.py")], cwd=work, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        anon, pid = 0, 0
        while not pid:  # wait4, not Popen.poll: it reaps the child with its resource usage
            anon = max(anon, rss_anon(proc.pid))
            time.sleep(0.1)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        seconds = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            sys.exit(f"{name} failed:\n{log.read()}")
    return seconds, usage.ru_maxrss / 2**20, anon / 2**20  # kB -> GB


@contextlib.contextmanager
def second_checkpoint(work):
    """The one checkpoint again as epoch 1 (hard links to the same weights and activations), so the
    original becomes a checkpoint before the last."""
    acts, ckpts = work / "data/activations", work / "data/checkpoints"
    (acts / "epoch_001").mkdir()
    for f in (acts / "epoch_000").iterdir():
        if f.suffix == ".npy":
            os.link(f, acts / "epoch_001" / f.name)
    meta = json.loads((acts / "epoch_000/meta.json").read_text())
    (acts / "epoch_001/meta.json").write_text(json.dumps({**meta, "epoch": 1, "checkpoint": checkpoint_name(1)}))
    os.link(ckpts / checkpoint_name(0), ckpts / checkpoint_name(1))
    config = (ckpts / "config.json").read_text()
    (ckpts / "config.json").write_text(json.dumps({**json.loads(config), "checkpoints": [0, 1]}))
    try:
        yield
    finally:
        shutil.rmtree(acts / "epoch_001")
        (ckpts / checkpoint_name(1)).unlink()
        (ckpts / "config.json").write_text(config)


def rss_anon(pid):
    """The process's anonymous resident memory in kB (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
    except (OSError, StopIteration):
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, help="keep the workspace here (reused when it has activations)")
    ap.add_argument("--stages", nargs="+", default=list(GOALS), choices=list(GOALS))
    ap.add_argument("--earlier", action="store_true",
                    help="also time a checkpoint before the last (no intervals or sample-size curves): each "
                         "stage again on two checkpoints, the difference")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir.resolve() if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = {}
        if not (work / "data/activations").exists():
            build(work)
            results["extract"] = stage(work, "extract")
        cpus = usable_cpus()
        device = device_name(pick_device())
        print(f"ImageNet-100 preset shape (ViT-S/16, 1000 probe images x 197 tokens x 384, 38 sites), one "
              f"checkpoint, {cpus} CPUs, on {device}; workspace {work}")
        for name in args.stages:
            results[name] = stage(work, name)
            print(f"  {name} done", flush=True)
        if args.earlier:
            with second_checkpoint(work):
                for name in args.stages:
                    two = stage(work, name)
                    results[f"{name} (earlier)"] = (two[0] - results[name][0], two[1], two[2])
                    print(f"  {name} on two checkpoints done", flush=True)
        print(f"{'stage':<22} {'time s':>8} {'goal s':>7} {'peak GB':>8} {'anon GB':>8}  goal met (time, memory)")
        for name, (seconds, gb, anon) in results.items():
            goal = GOALS.get(name.split()[0])
            met = "-" if goal is None else ", ".join(
                "yes" if ok else "NO" for ok in (seconds <= goal, gb <= MEMORY_GOAL_GB))
            print(f"{name:<22} {seconds:8.1f} {goal or '-':>7} {gb:8.2f} {anon:8.2f}  {met}")
        if args.earlier:
            # Intervals and sample-size curves are computed at the last checkpoint only.
            n = len(load("train", path=work / "params.yaml")["checkpoint_epochs"])
            print(f"per checkpoint over the preset's {n} checkpoints ({n - 1} earlier ones and the last, "
                  f"divided by {n}):")
            for name in args.stages:
                seconds = (results[name][0] + (n - 1) * results[f"{name} (earlier)"][0]) / n
                print(f"{name:<22} {seconds:8.1f} {GOALS[name]:>7}  {'yes' if seconds <= GOALS[name] else 'NO'}")

if __name__ == "__main__":
    main()
