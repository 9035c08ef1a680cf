"""A micro configuration and workspace helpers shared by the end-to-end tests."""
import functools
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import yaml
from dvc.utils.hydra import compose_and_dump

REPO = Path(__file__).resolve().parents[1]
# Stage commands in dvc.yaml call `python`: make it this interpreter.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
       # One thread per stage: the machine is small and tests may share it with other work.
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def compose(overrides=()):
    """params.yaml as DVC composes it from conf/ with these -S overrides (the committed defaults
    when there are none: an experiment in the workspace, which rewrites params.yaml, changes nothing here)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        compose_and_dump(out, str(REPO / "conf"), None, "config", "", list(overrides))
        return out.read_text()


@functools.cache
def _composed(overrides=()):
    return compose(overrides)


def defaults():
    return yaml.safe_load(_composed())


def micro_config(**overrides):
    """The micro configuration (conf/scale/micro.yaml: every stage in seconds on a CPU) with these
    values changed, {group: {key: value}}."""
    p = yaml.safe_load(_composed(("scale=micro",)))
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


def run(cmd, cwd, check=True, env=None, **kw):
    proc = subprocess.run(cmd, cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True, **kw)
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
        if rel == "dvc.lock" or rel.startswith(("reports/", "data/", "tests/")) and not rel.endswith("/README.md"):
            continue
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    run(["git", "init", "-q"], dst)
    return dst


def run_stage(name, cwd, params=None, args=()):
    """Run stages/<name>.py (with command-line args, e.g. --zoo <id>) in cwd, after writing
    params.yaml there if given; never raises."""
    cwd = Path(cwd)
    if params is not None:
        cwd.mkdir(parents=True, exist_ok=True)
        with open(cwd / "params.yaml", "w") as f:
            yaml.safe_dump(params, f, sort_keys=False)
    proc = subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py"), *args], cwd=cwd,
                          env=ENV, capture_output=True, timeout=300)
    # Decoded here, not with text=True: universal newlines would turn a progress bar's '\r' into '\n'.
    proc.stdout, proc.stderr = (b.decode("utf-8", "replace") for b in (proc.stdout, proc.stderr))
    return proc


def stage_ok(name, cwd, params=None, args=()):
    proc = run_stage(name, cwd, params, args)
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


def run_inprocess(stage, cwd, params, capsys, args=()):
    """Run stages/<stage>.py inside this process (its imports are already loaded, so it takes
    milliseconds) in cwd with these params and command-line args; returns returncode, stdout and
    stderr like run_stage."""
    with open(Path(cwd) / "params.yaml", "w") as f:
        yaml.safe_dump(params, f, sort_keys=False)
    old, old_argv = os.getcwd(), sys.argv
    os.chdir(cwd)
    script = str(REPO / "stages" / f"{stage}.py")
    sys.argv = [script, *args]
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code
    finally:
        os.chdir(old)
        sys.argv = old_argv
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def snapshot(root):
    """Every path under root with its size and modification time, except params.yaml."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in Path(root).rglob("*") if p.name != "params.yaml"}


def fails_before_writing(stage, root, params, capsys, *needles, args=()):
    """Run a stage in this process, expecting an error before it writes: one line naming the
    needles, exit code 2, and not a file under root created, changed or removed."""
    before = snapshot(root)
    line = stage_error(run_inprocess(stage, root, params, capsys, args), stage, *needles)
    assert snapshot(root) == before, "the failed stage changed the workspace"
    return line


def stage_of(record):
    """The dvc.yaml stage an audit record (tests/audit) comes from: `spectral`, or for a zoo
    model's run (`--zoo <id>`) `zoo_spectral@<id>` (`zoo_model@<id>` for stages/zoo_model.py)."""
    args = record.get("args", [])
    if args[:1] == ["--zoo"]:
        name = record["stage"] if record["stage"].startswith("zoo_") else f"zoo_{record['stage']}"
        return f"{name}@{args[1]}"
    return record["stage"]


def undeclared_reads(project, reads):
    """{stage: files it opened for reading that dvc.yaml does not declare} from the audit records in
    `reads`. Beside its deps a stage may read params.yaml, its own outputs (also while it writes
    them, under .<name>.tmp<pid>: tgo.io.atomic_path), DVC's or git's own files, and train its run
    in progress (data/train-work, by design no DVC output); code is checked by test_dvc_yaml.py."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    problems = {}
    for path in sorted(Path(reads).glob("*.json")):
        record = json.loads(path.read_text())
        name = stage_of(record)
        base, _, key = name.partition("@")
        spec = stages[base].get("do", stages[base])
        declared = [str(d).replace("${key}", key) for d in spec["deps"]]
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in spec.get("outs", []) + spec.get("metrics", [])]
        declared += [o.replace("${key}", key) for o in outs]
        work = {"train": ["data/train-work", "data/.train.lock"], "extract": ["data/extract-work"]}.get(name, [])
        if base == "zoo_extract":
            work = [f"data/zoo/{key}/extract-work"]
        allowed = [project / p for p in declared + work + ["params.yaml", ".dvc", ".git", ".dvcignore", ".gitignore"]]
        read = [published(p) for p in map(Path, record["reads"])]
        bad = [p for p in read if project in p.parents and p.suffix not in (".py", ".pyc")
               and "__pycache__" not in p.parts and not any(a == p or a in p.parents for a in allowed)]
        if bad:
            problems[name] = bad
    return problems


def published(path):
    """A path inside an output's temporary twin (.<name>.tmp<pid>) as it will be published."""
    return Path(*(re.sub(r"^\.(.+)\.tmp\d+$", r"\1", part) for part in path.parts))


def audited_stages(reads):
    return {stage_of(json.loads(p.read_text())) for p in Path(reads).glob("*.json")}
