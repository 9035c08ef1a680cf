"""One command checks a GPU machine (`make gpu-check`): the device, training throughput, and the
whole pipeline through `dvc exp run`, summarised in one JSON file.

1. The CUDA device (or that there is none).
2. `bench/train_throughput.py --gpu-preset` (ViT-S/16, 224 px, bf16), without and with
   `torch.compile`: images/s through the real data path, fed from the device (the ceiling) and
   through a serial data path (no prefetch: what the copy stream overlaps), and their ratios.
3. A fresh clone of this repository's committed code in a temporary directory, where
   `dvc exp run` runs every stage on a synthetic ImageNet-100-shaped set (100 classes, 256 px
   stored, 250 train + 50 val images per class: 25,000 + 5,000): one epoch of the DeiT preset,
   extract on the GPU, every analysis stage and the report. Each stage's time comes from its own
   "[stage] done in" line; peak GPU memory is sampled with torch.cuda.mem_get_info (every process
   on the device together).
4. extract's precisions on the trained checkpoint: the activations of the first val images
   captured in fp32 and in bf16 on the device, and the largest relative error
   ||bf16 - fp32|| / ||fp32|| of each site (over its blocks) against the 3% that README states.
5. Whether the analysis' eigendecompositions pay on the device: float64 covariance eigenvalues
   (384 x 384, the tokens stage's unit of work) by numpy on all CPU cores, one matrix per thread as
   the tokens stage runs them, against torch.linalg.eigvalsh on the device, on the same matrices
   (numpy_cpu_over_torch_<device>: their time ratio; without a GPU both run on the CPU).
6. The summary (throughput and its ratios, stage times, peak GPU memory, val accuracy, the bf16
   errors, the eigendecomposition times) goes to gpu_check.json (--out) and is printed.

Without a GPU the same command runs a tiny version of every step (a small ViT, a micro data set)
and says that no GPU was found; the default tests run it (tests/test_gpu_check.py). Its throughput
runs on one thread in interleaved rounds: on a small shared CPU a second thread's waits on the other
core (busy with other work) swamp what the paths differ by; its ratios compare CPU with CPU.

    make gpu-check                     # or: python bench/gpu_check.py [--out FILE] [--keep DIR] [--no-compile]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tgo.capture import capture  # noqa: E402
from tgo.checkpoints import load_checkpoint, read_config  # noqa: E402
from tgo.data import load_prepared  # noqa: E402
from tgo.distributed import pick_device  # noqa: E402
from tgo.io import usable_cpus  # noqa: E402
from tgo.models import create_model, input_config  # noqa: E402
from tgo.runs import PREPARED  # noqa: E402

GPU_RUN = ["data=imagenet100", "model=vit_small_patch16", "prepare.source=synthetic", "prepare.num_classes=100",
           "prepare.train_per_class=250", "prepare.val_per_class=50", "train.epochs=1", "train.warmup_epochs=0",
           "train.checkpoint_epochs=[0,1]"]
# The tests' micro configuration (tests/micro.py): every stage in seconds on a CPU. One epoch without
# warm-up, as GPU_RUN: a warm-up as long as the run would leave timm's cosine schedule one step (it warns).
TINY_RUN = ["scale=micro"]  # conf/scale/micro.yaml, the tests' configuration
GPU_THROUGHPUT = ["--gpu-preset"]
TINY_THROUGHPUT = ["--batch", "32", "--steps", "3", "--rounds", "5", "--warmup", "1", "--images", "256",
                   "--threads", "1"]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run(cmd, cwd):
    """Run a command, echoing its output (stdout and stderr) as it comes, so that a log cut short by a
    time limit still shows how far it got; returns the output. RuntimeError with its end if it fails."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if proc.wait():
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{''.join(lines)[-4000:]}")
    return "".join(lines)


def throughput(extra):
    """images/s of train_throughput.py's real data path, ceiling and serial data path, the ratios of
    real to the other two, and the timed steps behind each."""
    out = run([sys.executable, str(ROOT / "bench/train_throughput.py"), *extra], ROOT)
    number = lambda label: float(re.search(rf"{label}\s*:\s*([\d.]+)", out).group(1))  # noqa: E731
    rounds, steps = re.search(r"(\d+) x (\d+) timed steps per path", out).groups()
    return {"real_images_per_s": number("real data path"), "ceiling_images_per_s": number("device-fed ceiling"),
            "serial_images_per_s": number("serial data path"), "ratio": number("ratio real / ceiling"),
            "ratio_real_to_serial": number("ratio real / serial"), "timed_steps": int(rounds) * int(steps)}


def bf16_errors(work, device, n_images):
    """{site: largest ||bf16 - fp32|| / ||fp32|| over its blocks} of the last checkpoint's activations
    of the first n_images val images, captured (tgo.capture) in each precision on the device."""
    ckpt = work / "data/checkpoints"
    config = read_config(ckpt)
    model = create_model(**config["model_kwargs"])
    weights = load_checkpoint(ckpt, config["checkpoints"][-1])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    images = np.asarray(load_prepared(work / PREPARED, "val")[0][:n_images])
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            (Path(tmp) / precision).mkdir()
            capture(model, images, 32, Path(tmp) / precision, input_config(model), device=device, precision=precision)
        errors = {}
        for path in sorted((Path(tmp) / "fp32").glob("*.npy")):
            exact, fast = (np.load(Path(tmp) / p / path.name).astype(np.float64) for p in ("fp32", "bf16"))
            per_block = exact.ndim == 4  # (blocks, N, tokens, D); the other sites are one array
            pairs = zip(exact, fast) if per_block else [(exact, fast)]
            errors[path.stem] = max(float(np.linalg.norm(a - b) / np.linalg.norm(a)) for a, b in pairs)
    return errors


def eigendecompositions(device, dim, n_matrices, rounds=3):
    """Milliseconds per float64 covariance eigendecomposition (dim x dim): numpy on every CPU core,
    one matrix per thread with single-threaded BLAS (as the tokens stage), and torch.linalg.eigvalsh
    on the device (copy included), on the same matrices, taking turns `rounds` times; their ratio,
    named after both (on a CPU: numpy_cpu_over_torch_cpu); and the largest difference of their
    eigenvalues relative to the largest eigenvalue."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_matrices, 3 * dim, dim)) * np.arange(1, dim + 1) ** -0.5  # a power-law spectrum
    cov = np.swapaxes(x, 1, 2) @ x / (3 * dim - 1)
    cores = usable_cpus()

    def on_cpu():
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(cores) as pool:
            return np.stack(list(pool.map(np.linalg.eigvalsh, cov)))

    def on_device():
        out = torch.linalg.eigvalsh(torch.from_numpy(cov).to(device)).cpu().numpy()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    a, b = on_cpu(), on_device()  # warm-up: thread pool, cuSOLVER handles
    ms = {on_cpu: 0.0, on_device: 0.0}
    for _ in range(rounds):  # in turns: a load changing meanwhile (a shared CPU) weighs on both alike
        for f in ms:
            t0 = time.perf_counter()
            f()
            ms[f] += 1e3 * (time.perf_counter() - t0) / (n_matrices * rounds)
    torch_name = f"torch_{device.type}"
    return {"dim": dim, "matrices": n_matrices, "rounds": rounds, "cpu_cores": cores,
            "numpy_cpu_ms": round(ms[on_cpu], 3), f"{torch_name}_ms": round(ms[on_device], 3),
            f"numpy_cpu_over_{torch_name}": round(ms[on_cpu] / ms[on_device], 3),
            "max_relative_difference": float(np.abs(a - b).max() / np.abs(a).max())}


class PeakGPUMemory:
    """The most memory in use on the GPU (all processes), sampled every 0.2 s while in the block."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()

    def _sample(self):
        while not self._stop.wait(0.2):
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def pipeline(work, overrides, gpu):
    """A fresh clone of the committed code runs `dvc exp run` with the overrides: (stage seconds,
    peak GPU GB or None, val top-1)."""
    run(["git", "clone", "-q", str(ROOT), str(work)], ROOT)
    cmd = ["dvc", "exp", "run", *[a for o in overrides for a in ("-S", o)]]
    print(f"$ {' '.join(cmd)}   (in {work})", flush=True)
    if gpu:
        with PeakGPUMemory() as memory:
            out = run(cmd, work)
        peak = round(memory.peak / 2**30, 2)
    else:
        out, peak = run(cmd, work), None
    stages = {name: float(s) for name, s in re.findall(r"^\[(\w+)\] done in ([\d.]+) s", out, re.M)}
    top1 = json.loads((work / "reports/metrics/train.json").read_text())["val_top1"]
    return stages, peak, top1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="where the JSON summary goes")
    ap.add_argument("--keep", type=Path, help="run the pipeline in this directory (kept) instead of a temporary one")
    ap.add_argument("--no-compile", action="store_true",
                    help="skip the torch.compile throughput run (1-2 minutes of compiling on a GPU)")
    args = ap.parse_args()
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if gpu else None
    print(f"CUDA device: {device}" if gpu else
          "no GPU found (torch.cuda.is_available() is False): running the tiny CPU version", flush=True)
    t0 = time.perf_counter()
    summary = {"device": device or "cpu", "tiny": not gpu, "throughput": {}, "failed": {}}

    def save():
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")

    def step(name, f):
        """f()'s result, or None with the error recorded in the summary: one step failing (a compiler, a
        stage) leaves the others to run, and the summary is written after every step, so that a run cut
        short still leaves what it measured."""
        try:
            return f()
        except Exception as e:  # any failure is a finding of the check
            summary["failed"][name] = str(e)[-4000:]
            print(f"gpu-check: {name} failed: {str(e)[-4000:]}", flush=True)
        finally:
            save()

    for compiled in (False, True) if gpu and not args.no_compile else (False,):
        name = "compile" if compiled else "eager"
        extra = (GPU_THROUGHPUT if gpu else TINY_THROUGHPUT) + (["--compile"] if compiled else [])
        summary["throughput"][name] = step(f"throughput {name}", lambda: throughput(extra))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep.resolve() if args.keep else Path(tmp) / "project"
        ran = step("pipeline", lambda: pipeline(work, GPU_RUN if gpu else TINY_RUN, gpu))
        if ran:
            summary.update(zip(("stage_seconds", "peak_gpu_memory_gb", "val_top1"), ran))
            errors = step("bf16", lambda: bf16_errors(work, pick_device(), 64 if gpu else 8))
            summary["bf16_relative_error"] = errors
            print(f"bf16 vs fp32 capture, largest relative error per site: {errors}", flush=True)
    # On a CPU 16 matrices of the real size: tens of milliseconds a turn, enough to time.
    summary["eigendecompositions"] = step("eigendecompositions",
                                          lambda: eigendecompositions(pick_device(), 384, 64 if gpu else 16))
    print(f"covariance eigendecompositions{'' if gpu else ' (CPU version: numpy and torch both on the CPU)'}: "
          f"{summary['eigendecompositions']}", flush=True)

    goals = {}
    if summary.get("bf16_relative_error"):
        goals["bf16_within_3pct"] = max(summary["bf16_relative_error"].values()) < 0.03
    measured = [r for r in summary["throughput"].values() if r]
    if gpu and measured:
        best = max(measured, key=lambda r: r["real_images_per_s"])
        goals.update({"5000_images_per_s": best["real_images_per_s"] >= 5000,
                      "ratio_at_least_0.9": best["ratio"] >= 0.9})
    summary["goals"] = goals
    save()
    print(json.dumps(summary, indent=2))
    if summary["failed"]:
        sys.exit(f"gpu-check: failed steps: {', '.join(summary['failed'])} (their errors are in {args.out})")
    print(f"gpu-check: {'done' if gpu else 'done (tiny CPU version: no GPU found)'} -> {args.out}")


if __name__ == "__main__":
    main()
