"""`make gpu-check` on a machine without a GPU: the tiny version of every step, one JSON summary."""
import json
import re
import subprocess
import sys

import torch

from micro import ENV, REPO


def test_gpu_check_runs_its_tiny_version_without_a_gpu(tmp_path):
    assert not torch.cuda.is_available()  # CI and the development machines have no GPU
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench/gpu_check.py"), "--out", str(out)], cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no GPU found" in proc.stdout
    # Nothing warns, timm's scheduler (a warm-up as long as the one epoch) included.
    assert not re.search(r"warn|will have no effect", proc.stdout + proc.stderr, re.I), proc.stdout + proc.stderr
    summary = json.loads(out.read_text())
    assert summary["tiny"] is True and summary["device"] == "cpu" and summary["peak_gpu_memory_gb"] is None
    eager = summary["throughput"]["eager"]
    assert eager["real_images_per_s"] > 0 and eager["ceiling_images_per_s"] > 0
    assert abs(eager["ratio"] - eager["real_images_per_s"] / eager["ceiling_images_per_s"]) < 0.01
    assert abs(eager["ratio_real_to_serial"] - eager["real_images_per_s"] / eager["serial_images_per_s"]) < 0.01
    # Enough timed steps per path for the ratios to mean something, and their labels say they compare CPU with CPU.
    assert eager["timed_steps"] >= 15
    assert "CPU version: the device is the CPU" in proc.stdout
    # Every stage of the pipeline ran through dvc exp run and said how long it took.
    assert set(summary["stage_seconds"]) >= {"prepare", "train", "extract", "spectral", "tokens", "correlation", "mi",
                                             "qk", "report"}
    assert 0 <= summary["val_top1"] <= 100
    # bf16 really ran (an error far above float32's) and every site stayed within README's 3%.
    errors = summary["bf16_relative_error"]
    assert set(errors) == {"embed", "residual", "attn", "mlp", "final_norm"}
    assert all(1e-4 < e < 0.03 for e in errors.values()) and summary["goals"]["bf16_within_3pct"]
    # numpy's and torch's LAPACK agree on the same matrices, to rounding.
    eig = summary["eigendecompositions"]
    assert eig["numpy_cpu_ms"] > 0 and eig["torch_cpu_ms"] > 0 and eig["max_relative_difference"] < 1e-12
    # The ratio is named after what it compares: numpy against torch, both on the CPU (there is no device).
    assert "cpu_over_device" not in eig
    assert abs(eig["numpy_cpu_over_torch_cpu"] - eig["numpy_cpu_ms"] / eig["torch_cpu_ms"]) < 0.01


def test_a_failed_step_is_recorded_and_the_others_still_run(tmp_path):
    # A pipeline that cannot start (its directory is taken) must not cost the GPU session the other
    # measurements: the JSON names the failure, the later steps ran, and the exit code says so.
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("not a clone")
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench/gpu_check.py"), "--out", str(out), "--keep", str(taken)],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "failed steps: pipeline" in proc.stderr, proc.stdout + proc.stderr
    summary = json.loads(out.read_text())
    assert list(summary["failed"]) == ["pipeline"] and "git" in summary["failed"]["pipeline"]
    assert summary["throughput"]["eager"]["real_images_per_s"] > 0
    assert summary["eigendecompositions"]["max_relative_difference"] < 1e-12
    assert "stage_seconds" not in summary and "bf16_relative_error" not in summary
