"""Imported at start-up by every Python process of the pipeline test (this folder is put on
PYTHONPATH). When TGO_READ_AUDIT names a folder, a stage script writes there, as it exits, every
file it opened for reading: tests/test_pipeline.py checks that dvc.yaml declares each one."""
import atexit
import json
import os
import sys

_folder = os.environ.get("TGO_READ_AUDIT")
_reads = set()


def _record(event, args):
    if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path, mode, flags = args
    reading = ("r" in mode and "+" not in mode) if isinstance(mode, str) else (flags & os.O_ACCMODE) == os.O_RDONLY
    if reading:
        _reads.add(os.path.abspath(os.fsdecode(path)))


def _write():
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(os.path.dirname(os.path.abspath(script))) == "stages":
        name = os.path.splitext(os.path.basename(script))[0]
        with open(os.path.join(_folder, f"{name}.{os.getpid()}.json"), "w") as f:
            json.dump({"stage": name, "args": sys.argv[1:], "cwd": os.getcwd(), "reads": sorted(_reads)}, f)


if _folder:
    sys.addaudithook(_record)
    atexit.register(_write)
