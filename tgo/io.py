"""Small I/O helpers shared by the stages: expected errors, params, atomic writes."""
import csv
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import yaml


class TGOError(Exception):
    """An expected failure (bad input or params). Stages print its message on one line and exit 2."""


def load_params(path="params.yaml"):
    path = Path(path)
    if not path.exists():
        raise TGOError(f"{path}: not found; run from the project root (where dvc.yaml is)")
    with open(path) as f:
        return yaml.safe_load(f)


def run_stage(name, main):
    """Run a stage's main(): print its wall time; turn a TGOError into one line and exit code 2."""
    start = time.perf_counter()
    try:
        main()
    except TGOError as e:
        print(f"tgo {name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    if "LOCAL_RANK" not in os.environ:  # torchrun workers: the launching process reports
        print(f"[{name}] done in {time.perf_counter() - start:.1f} s")


def _tmp_path(path):
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_dir(path):
    """Yield a temporary directory that replaces `path` only if the block finishes.

    A killed or failing stage therefore never leaves a half-written directory that looks complete.
    """
    path = Path(path)
    tmp = _tmp_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


@contextmanager
def atomic_file(path, mode="w"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, mode) as f:
            yield f
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_json(path, obj):
    with atomic_file(path) as f:
        json.dump(obj, f, indent=2, allow_nan=True)
        f.write("\n")


def _open_input(path):
    if not Path(path).exists():
        raise TGOError(f"{path}: not found; run the stages before this one (dvc repro)")
    return open(path)


def read_json(path):
    with _open_input(path) as f:
        return json.load(f)


def write_csv(path, rows):
    """Write a list of dicts (same keys) as CSV; DVC plots read it directly."""
    rows = list(rows)
    with atomic_file(path, mode="w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path):
    with _open_input(path) as f:
        return list(csv.DictReader(f))
