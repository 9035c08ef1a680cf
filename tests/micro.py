"""A micro configuration and workspace helpers shared by the end-to-end tests."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Stage commands in dvc.yaml call `python`: make it this interpreter.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
       # One thread per stage: the machine is small and tests may share it with other work.
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def micro_config(**overrides):
    """The repo's params.yaml shrunk so that every stage runs in seconds on a CPU."""
    with open(REPO / "params.yaml") as f:
        p = yaml.safe_load(f)
    p["prepare"].update(num_classes=4, train_per_class=20, val_per_class=10, image_size=16)
    p["model"].update(depth=2, embed_dim=32, num_heads=2)
    p["train"].update(epochs=2, batch_size=16, checkpoint_epochs=[0, 1, 2])
    p["extract"].update(probe_size=32)
    p["spectral"].update(alpha_ranks=[2, 12])
    p["tokens"].update(alpha_ranks=[2, 12], n_clusters=3, n_permutations=200)
    p["mi"].update(n_channels=4, bowtie_bins=7)
    p["qk"].update(max_images=8)
    for group, values in overrides.items():
        p[group].update(values)
    return p


def write_params(path, params):
    """params.yaml, and conf/config.yaml with the same values (no defaults list): `dvc exp run`
    composes params.yaml from conf/ (DVC's Hydra composition is enabled)."""
    for rel in ("params.yaml", "conf/config.yaml"):
        (Path(path) / rel).parent.mkdir(parents=True, exist_ok=True)
        with open(Path(path) / rel, "w") as f:
            yaml.safe_dump(params, f, sort_keys=False)


def run(cmd, cwd, check=True, **kw):
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def git_commit(cwd, message):
    run(["git", "add", "-A"], cwd)
    run(["git", "-c", "user.email=tgo@test", "-c", "user.name=tgo", "commit", "-q", "--allow-empty",
         "-m", message], cwd)


def copy_project(dst):
    """Copy the project's source files (tracked or not ignored), without the committed baseline,
    into a fresh git repository at dst."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split()
    for rel in files:
        if rel == "dvc.lock" or rel.startswith(("reports/", "data/", "tests/")):
            continue
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    run(["git", "init", "-q"], dst)
    return dst


def run_stage(name, cwd, params=None):
    """Run stages/<name>.py in cwd (after writing params.yaml there, if given); never raises."""
    cwd = Path(cwd)
    if params is not None:
        cwd.mkdir(parents=True, exist_ok=True)
        with open(cwd / "params.yaml", "w") as f:
            yaml.safe_dump(params, f, sort_keys=False)
    proc = subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py")], cwd=cwd,
                          env=ENV, capture_output=True, timeout=300)
    # Decoded here, not with text=True: universal newlines would turn a progress bar's '\r' into '\n'.
    proc.stdout, proc.stderr = (b.decode("utf-8", "replace") for b in (proc.stdout, proc.stderr))
    return proc


def stage_ok(name, cwd, params=None):
    proc = run_stage(name, cwd, params)
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def rendered_lines(stream):
    """Non-empty lines as a terminal shows them: a progress bar redrawn with '\\r' and then
    cleared leaves only what was written after the last '\\r' of a line."""
    lines = (line.rsplit("\r", 1)[-1].strip() for line in stream.split("\n"))
    return [line for line in lines if line]


def stage_error(proc, stage, *needles):
    """Assert the run failed as an expected error; return its single stderr line."""
    report = f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 2, report
    assert "Traceback" not in proc.stderr, report
    lines = rendered_lines(proc.stderr)
    assert len(lines) == 1, report
    line = lines[0]
    assert line.startswith(f"tgo {stage}: error: "), report
    for needle in needles:
        assert str(needle) in line, f"{needle!r} not in {line!r}"
    return line
