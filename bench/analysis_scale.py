"""Benchmark: every analysis stage at the ImageNet-100 preset's shape, each stage's time and peak memory.

Builds a workspace with the preset's params (`data=imagenet100 model=vit_small_patch16`, as
`dvc exp run -S` composes them), a synthetic probe set of the preset's shape (1,000 val images in
10 classes, stored at 256 px), a randomly initialised ViT-S/16 as the one checkpoint, then runs the real
stage scripts in it, one process each: extract (1,000 images x 197 tokens x 384 dims x 38 sites,
5.8 GB of float16), spectral, tokens, correlation, mi, qk. One checkpoint is the last one, so
every stage also does its last-checkpoint work (intervals, sample-size curves): the most a
checkpoint costs. Peak memory is each process's maximum resident set (os.wait4), which counts the
pages of the memory-mapped activations it touched. With tokens it also prints the error of the
tokens jackknife's approximation on this data (one block against full eigendecompositions).

    python bench/analysis_scale.py                         # build the workspace in a temp dir, run all
    python bench/analysis_scale.py --workdir /tmp/scale    # keep it; a second call reuses its activations
    python bench/analysis_scale.py --workdir /tmp/scale --stages correlation
    python bench/analysis_scale.py --baseline 323adc3      # each stage also as that commit runs it, before
                                                           # this code, in the same run: the ratio
    python bench/analysis_scale.py --earlier       # also a checkpoint before the last (twice as long),
                                                   # and the time per checkpoint over the preset's schedule

Stages run one after another on an otherwise idle machine: run nothing else meanwhile.
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

import numpy as np
import torch
from dvc.utils.hydra import compose_and_dump

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tgo.checkpoints import checkpoint_name, import_weights  # noqa: E402
from tgo.distributed import device_name, pick_device  # noqa: E402
from tgo.io import usable_cpus  # noqa: E402
from tgo.models import create_model, model_kwargs  # noqa: E402
from tgo.params import load  # noqa: E402

# The goals per checkpoint on 2 cores: seconds (None: no time goal), and 6 GB peak for every stage.
GOALS = {"extract": None, "spectral": 40, "tokens": 60, "correlation": 20, "mi": 60, "qk": 30}
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


def stage(work, name, code=ROOT):
    """Run stages/<name>.py of the code in `code` (this checkout, or a baseline's) in the workspace:
    (seconds, peak resident GB, peak anonymous GB). The resident set also counts the pages of
    memory-mapped activations read (file-backed, which the kernel can drop); the anonymous part,
    sampled every 0.1 s, is the memory the stage allocated."""
    if name == "extract":  # from scratch: the last extraction's output would be taken as done
        shutil.rmtree(work / "data/activations", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(code)}  # ahead of the installed (editable) tgo
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, str(code / "stages" / f"{name}.py")], cwd=work, stdout=log,
                                stderr=subprocess.STDOUT, text=True, env=env)
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


@contextlib.contextmanager
def baseline_code(rev):
    """The stages and tgo of commit `rev`, unpacked in a temporary directory (None: none asked for)."""
    if rev is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "stages", "tgo"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        found = subprocess.run([sys.executable, "-c", "import tgo; print(tgo.__file__)"], capture_output=True,
                               text=True, check=True, env={**os.environ, "PYTHONPATH": tmp}, cwd="/").stdout
        assert found.startswith(tmp), f"the baseline's stages would import {found}"
        yield Path(tmp)


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
    ap.add_argument("--stages", nargs="+", default=list(GOALS), choices=list(GOALS),
                    help="extract runs when named or when the workspace has no activations")
    ap.add_argument("--baseline", metavar="REV",
                    help="also run each stage as commit REV does (its stages/ and tgo/), just before this code's")
    ap.add_argument("--earlier", action="store_true",
                    help="also time a checkpoint before the last (no intervals or sample-size curves): each "
                         "stage again on two checkpoints, the difference")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, baseline_code(args.baseline) as before:
        work = args.workdir.resolve() if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        names = [n for n in GOALS if n in args.stages or (n == "extract" and not (work / "data/activations").exists())]
        if not (work / "data/prepared").exists():
            build(work)
        print(f"ImageNet-100 preset shape (ViT-S/16, 1000 probe images x 197 tokens x 384, 38 sites), one "
              f"checkpoint, {usable_cpus()} CPUs, on {device_name(pick_device())}; workspace {work}"
              + (f"; baseline {args.baseline}" if before else ""))
        results, baseline = {}, {}
        for name in names:
            if before:
                baseline[name] = stage(work, name, before)
            results[name] = stage(work, name)
            print(f"  {name} done", flush=True)
        if args.earlier:
            with second_checkpoint(work):
                for name in [n for n in names if n != "extract"]:
                    two = stage(work, name)
                    results[f"{name} (earlier)"] = (two[0] - results[name][0], two[1], two[2])
                    print(f"  {name} on two checkpoints done", flush=True)
        report(results, baseline, args.baseline)
        if "tokens" in names:
            tolerance(work)
        if args.earlier:
            # Intervals and sample-size curves are computed at the last checkpoint only.
            n = len(load("train", path=work / "params.yaml")["checkpoint_epochs"])
            print(f"per checkpoint over the preset's {n} checkpoints ({n - 1} earlier ones and the last, "
                  f"divided by {n}):")
            for name in [n for n in names if GOALS[n]]:
                seconds = (results[name][0] + (n - 1) * results[f"{name} (earlier)"][0]) / n
                print(f"{name:<22} {seconds:8.1f} {GOALS[name]:>7}  {'yes' if seconds <= GOALS[name] else 'NO'}")


def tolerance(work, block=6):
    """The tokens jackknife's approximation on this data: one block's replicate alphas from
    spectral.leading_jackknife_eigenspectra against full float64 eigendecompositions of every replicate."""
    from tgo import activations
    from tgo.geometry import spectral
    from tgo.geometry.stats import image_groups, standard_error

    params = load("tokens", "ci", path=work / "params.yaml")
    act_dir, meta = activations.checkpoints(work / "data/activations")[-1]
    labels = image_groups(meta["n_images"], params["ci"]["groups"], params["ci"]["seed"])
    ranks = tuple(params["tokens"]["alpha_ranks"])
    X = np.moveaxis(np.asarray(activations.load(act_dir, "residual")[block]), 1, 0)  # (tokens, N, D)
    ritz, full, point = [], [], []
    for part in np.array_split(X, len(X) // 8):  # the exact replicates' covariances: 9 MB a token each
        eigs, reps = spectral.leading_jackknife_eigenspectra(part, labels, ranks[1])
        ritz.append(spectral.batched_alpha(reps, ranks)[0])
        full.append(spectral.batched_alpha(spectral.jackknife_eigenspectra(part, labels), ranks)[0])
        point.append(spectral.batched_alpha(eigs, ranks)[0]
                     - spectral.batched_alpha(spectral.batched_eigenspectra(part), ranks)[0])
    ritz, full, point = np.concatenate(ritz, axis=1), np.concatenate(full, axis=1), np.concatenate(point)
    se = standard_error(np.moveaxis(full, 0, -1))
    print(f"tokens' jackknife at block {block + 1} ({X.shape[0]} tokens, {len(reps)} replicates, {reps.shape[-1]} "
          f"of {X.shape[-1]} eigenvalues): replicate alphas within {np.abs(ritz - full).max():.1e} of full "
          f"eigendecompositions (standard error {se.mean():.1e}); standard errors within "
          f"{np.abs(standard_error(np.moveaxis(ritz, 0, -1)) / se - 1).max():.2%}; point alphas within "
          f"{np.abs(point).max():.0e}")


def report(results, baseline, rev):
    """One table: each stage's time and peak memory, the baseline's beside them when it was measured."""
    before = bool(baseline)
    print(f"{'stage':<20}" + (f"{'before s':>9}{'after s':>9}{'ratio':>7}{'before GB':>10}{'after GB':>9}" if before
                              else f"{'time s':>9}{'peak GB':>9}") + f"{'anon GB':>9}{'goal s':>8}  goal met (time, memory)")
    for name, (seconds, gb, anon) in results.items():
        goal = GOALS.get(name.split()[0])
        met = ", ".join(["-" if goal is None else "yes" if seconds <= goal else "NO",
                         "yes" if gb <= MEMORY_GOAL_GB else "NO"])
        if name in baseline:
            old = baseline[name]
            row = f"{old[0]:9.1f}{seconds:9.1f}{old[0] / seconds:6.2f}x{old[1]:10.2f}{gb:9.2f}"
        else:
            row = f"{'-':>9}{seconds:9.1f}{'-':>7}{'-':>10}{gb:9.2f}" if before else f"{seconds:9.1f}{gb:9.2f}"
        print(f"{name:<20}{row}{anon:9.2f}{goal or '-':>8}  {met}")
    print("peak GB: the largest resident set (it counts the pages of memory-mapped activations read); anon GB: "
          "this code's allocated memory" + (f"; before: commit {rev}, ratio: its time over this code's, both "
                                             "measured in this run" if before else ""))


if __name__ == "__main__":
    main()
