"""Small helpers shared by the stages: expected errors, the stage runner, the usable cores, progress
bars, atomic writes, JSON and CSV."""
import csv
import ctypes
import errno
import json
import os
import shutil
import signal
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from tqdm import tqdm


class TGOError(Exception):
    """An expected failure (bad input or params). Stages print its message on one line and exit 2."""


# Errors of the disk rather than of the code: a stage says which path and what to do, on one line.
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def run_stage(name, main, scratch=None):
    """Run a stage's main(): print its wall time. An expected failure (TGOError, a full or read-only
    disk) becomes one line and exit code 2; a signal (SIGINT, SIGTERM, the death of the `dvc` that
    started it) one line and exit code 130, naming the folder the stage resumes from (`scratch()`)."""
    start = time.perf_counter()
    old_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _stop_with_parent()
        main()
    except TGOError as e:
        _fail(name, e, 2)
    except KeyboardInterrupt:
        # The signal can land inside a constructor (a tqdm bar between its `disable` and `pos`
        # attributes); that half-built object's finaliser then fails on the way out with a traceback
        # that says nothing the stop line does not.
        sys.unraisablehook = lambda unraisable: None
        _fail(name, _stopped(scratch and scratch()), 130)
    except OSError as e:
        if e.errno in DISK_FULL:
            _fail(name, f"{e.filename or 'the disk'}: no space left on its disk; free some space (or point "
                        "data/ elsewhere) and rerun: train and extract resume where they stopped", 2)
        if e.errno in NOT_WRITABLE:
            _fail(name, f"{e.filename}: cannot write here ({e.strerror}); make data/ and reports/ writable (or "
                        "run from a writable copy of the project) and rerun", 2)
        raise
    finally:
        signal.signal(signal.SIGTERM, old_handler)
    if "LOCAL_RANK" not in os.environ:  # torchrun workers: the launching process reports
        print(f"[{name}] done in {time.perf_counter() - start:.1f} s")


def _fail(name, message, code):
    print(f"tgo {name}: {'' if code == 130 else 'error: '}{message}", file=sys.stderr)
    sys.exit(code)


def _stopped(scratch):
    """What a stage stopped by a signal says: its outputs are untouched (tgo.io.atomic_path; DVC keeps
    them: persist), and how to resume or, not resuming, free the work done so far."""
    text = "stopped before it finished; its outputs are as the last complete run left them. Run the same command again"
    if scratch is None or not Path(scratch).is_dir():
        return text
    size = sum(f.stat().st_size for f in Path(scratch).rglob("*") if f.is_file())
    return f"{text} to resume from {scratch} ({size_text(size)}), or delete that folder to drop the work done"


def _interrupt(signum, frame):
    """SIGTERM (`kill`, a scheduler's time limit) stops a stage as Ctrl-C does, through its cleanup."""
    raise KeyboardInterrupt


def _stop_with_parent():
    """On Linux a stage gets SIGTERM when the process that started it dies (a `dvc` killed with
    SIGKILL): it stops, and the next `dvc repro` resumes it, instead of finishing unseen while that
    `dvc repro` starts it again from the beginning. SIGTERM, not SIGINT: a job started in the
    background ignores SIGINT, and so would the stage."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect
        raise KeyboardInterrupt


def usable_cpus():
    """The cores this process may run on: its affinity mask (taskset, Slurm, a container's cpuset),
    which can be fewer than os.cpu_count(), the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not available on every platform
        return max(1, os.cpu_count() or 1)


def progress(iterable=None, **kwargs):
    """A tqdm progress bar (on stderr unless `file` is given). In a terminal, nested bars take the
    lines below their parent's; tqdm moves between those lines with cursor-up escapes, which a log
    (stderr not a terminal: `dvc repro 2> log`, `dvc exp run --queue`) keeps as stray `[A` lines,
    so there every bar redraws the same line instead, after a carriage return."""
    if not getattr(kwargs.get("file") or sys.stderr, "isatty", lambda: False)():
        kwargs["position"] = 0
    return tqdm(iterable, **kwargs)


def _tmp_path(path):
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_scratch(path):
    """Remove the temporary paths that killed runs left next to `path` (.<name>.tmp<pid> of a
    process that no longer runs); a live process's are left alone."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.tmp*"):
        pid = tmp.name.rsplit(".tmp", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(tmp)


@contextmanager
def single_writer(lock, what):
    """Hold `lock` (a file holding this process's PID) while writing `what`. A live process's lock
    (a run that outlived a killed `dvc`) stops this one with one line; a dead one's is taken over."""
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            pid = lock.read_text().strip()
            if pid.isdigit() and _alive(int(pid)):
                raise TGOError(f"{what} is being written by another process (pid {pid}, {lock}); wait for it "
                               f"to finish or stop it (kill {pid}), then rerun") from None
            lock.unlink(missing_ok=True)
    else:
        raise TGOError(f"{lock}: cannot take the lock; remove it if no other run is writing {what}")
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def require_free_space(path, nbytes):
    """Stop with one line unless the disk that holds `path` has nbytes free (checked before a stage
    writes a large output, so a full disk is not found halfway through)."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < nbytes:
        raise TGOError(f"{path}: needs {size_text(nbytes)} free, {size_text(free)} available on its disk; "
                       "free some space (or point DVC's cache elsewhere) and rerun")


def size_text(nbytes):
    """A byte count as a person reads it: 1.5 GB, 300.0 MB, 12.0 kB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 1e3:.1f} kB"


def _remove(path):
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path, is_dir=False):
    """Yield a temporary path (a fresh directory if is_dir) that replaces `path` only if the block
    finishes: the project's one way of writing an output, so a killed or failing stage never
    leaves a half-written file or directory that looks complete."""
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_scratch(path)
        _remove(tmp)
        if is_dir:
            tmp.mkdir()
        yield tmp
    except BaseException as e:
        with suppress(OSError):  # a read-only disk refuses even to unlink what is not there
            _remove(tmp)
        # An error of the disk names the output, not the scratch path (a full disk names nothing).
        if isinstance(e, OSError) and e.filename in (None, str(tmp)):
            e.filename = str(path)
        raise
    if is_dir:
        shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def atomic_dir(path):
    """A temporary directory that replaces the directory `path` when the block finishes."""
    return atomic_path(path, is_dir=True)


@contextmanager
def atomic_file(path, mode="w"):
    """An open file that replaces `path` when the block finishes."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


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
    """Rows of a CSV as dicts, with floats where a value parses as a number."""
    with _open_input(path) as f:
        return [{k: _number_or_text(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number_or_text(v):
    try:
        return float(v)
    except ValueError:
        return v
