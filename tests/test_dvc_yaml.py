"""dvc.yaml is true to the code: a stage depends on its script, the script's whole `tgo` import
closure (and the data files those modules read), and the params groups its code loads, each key of
which that code reads. So editing any code a stage runs makes `dvc status` list the stage."""
import ast
import hashlib
import subprocess

import pytest
import yaml

from micro import REPO
from tgo.params import MAPPINGS, SCHEMA

DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
# A foreach stage (the zoo's) is checked through its template, `do`.
STAGES = {name: spec.get("do", spec) for name, spec in DVC_YAML["stages"].items()}


def module_file(name):
    """tgo.a.b -> tgo/a/b.py (or tgo/a/b/__init__.py); None if it is not a module of the project."""
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def tgo_imports(path):
    """Modules of tgo that a file imports, anywhere in it (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tgo"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tgo":
            for a in node.names:  # `from tgo import activations` imports the module tgo.activations
                sub = f"{node.module}.{a.name}"
                found.add(sub if module_file(sub) else node.module)
    return found


def is_docstring_only(path):
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def closure(script):
    """The files a stage script runs and reads within the project: the script, every tgo module it
    imports transitively (with the packages' __init__ files that hold code) and the data files that
    those modules name next to themselves (e.g. tgo/imagenet100_cmc.txt)."""
    todo, seen = [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in tgo_imports(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing tgo.a.b runs tgo/__init__.py and tgo/a/__init__.py
                todo.append(module_file(".".join(parts[:i])))
    files = {p for p in seen if not (p.name == "__init__.py" and is_docstring_only(p))}
    for p in seen:
        beside = {f.name for f in p.parent.iterdir() if f.is_file() and f.suffix not in (".py", ".pyc")}
        files |= {p.parent / name for name in string_constants(p) & beside}
    return files


def string_constants(path):
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def script_of(stage):
    cmd = STAGES[stage]["cmd"].split()
    assert cmd[:2] == ["python", "-m"] and cmd[2].startswith("stages."), STAGES[stage]["cmd"]
    return REPO / (cmd[2].replace(".", "/") + ".py")


def code_deps(stage):
    """The deps of a stage that are code (or files next to the code) in the repository."""
    return {REPO / d for d in STAGES[stage]["deps"] if d.startswith(("stages/", "tgo/"))}


@pytest.mark.parametrize("stage", STAGES)
def test_deps_are_the_import_closure(stage):
    want, listed = closure(script_of(stage)), code_deps(stage)
    missing = sorted(str(p.relative_to(REPO)) for p in want - listed)
    stale = sorted(str(p.relative_to(REPO)) for p in listed - want)
    assert not missing, f"dvc.yaml stage {stage} runs but does not depend on: {missing}"
    assert not stale, f"dvc.yaml stage {stage} depends on code it does not run: {stale}"


def test_closure_finds_a_removed_dep():
    # The check above is only as good as the closure: spectral runs the spectral metric module and
    # the activation store, and prepare reads the ImageNet-100 class list next to its module.
    spectral = closure(script_of("spectral"))
    assert {REPO / "tgo/geometry/spectral.py", REPO / "tgo/activations.py", REPO / "tgo/io.py"} <= spectral
    assert REPO / "tgo/capture.py" not in spectral
    assert REPO / "tgo/imagenet100_cmc.txt" in closure(script_of("prepare"))


def loaded_groups(script):
    """The params groups a script loads: tgo.params.load("a", "b") -> {a, b}; load(*SCHEMA) -> all."""
    groups = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load":
            for arg in node.args:
                if isinstance(arg, ast.Constant):
                    groups.add(arg.value)
                elif isinstance(arg, ast.Starred) and getattr(arg.value, "id", None) == "SCHEMA":
                    groups.add("params.yaml")
    return groups


def declared_params(stage):
    """{group: the keys of it the stage depends on}: `- spectral` is the whole group, `-
    extract.batch_size` one key, `- zoo.${key}` one entry of a mapping group (all its keys), `-
    params.yaml:` the whole file."""
    declared = {}
    for entry in STAGES[stage].get("params", []):
        for name in ([entry] if isinstance(entry, str) else list(entry)):
            group, _, key = name.partition(".")
            if name == "params.yaml":
                declared["params.yaml"] = set()
            elif key and group not in MAPPINGS:
                declared.setdefault(group, set()).add(key)
            else:
                declared[group] = set(SCHEMA[group])
    return declared


def declared_groups(stage):
    return set(declared_params(stage))


@pytest.mark.parametrize("stage", STAGES)
def test_params_deps_are_the_groups_the_stage_loads(stage):
    assert declared_groups(stage) == loaded_groups(script_of(stage))


@pytest.mark.parametrize("stage", [s for s in STAGES if "params.yaml" not in declared_groups(s)])
def test_every_key_of_a_stage_group_is_read_by_its_code(stage):
    # A key is read when its name appears as a string in the stage's code (tgo.params, which
    # declares every key, does not count).
    code = closure(script_of(stage)) - {REPO / "tgo/params.py"}
    strings = set().union(*(string_constants(p) for p in code if p.suffix == ".py"))
    unread = [f"{g}.{k}" for g, keys in declared_params(stage).items() for k in sorted(keys) if k not in strings]
    assert not unread, f"stage {stage} depends on params its code never reads: {unread}"


def test_every_group_belongs_to_a_stage():
    owned = set().union(*(declared_groups(s) for s in STAGES)) - {"params.yaml"}
    assert owned == set(SCHEMA)


def committed_bytes(path):
    """The file as committed (git HEAD)."""
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, check=True).stdout


def test_the_committed_lock_records_the_committed_code():
    # The baseline's dvc.lock must hash each code dep as committed: a stage whose code was committed
    # without rerunning the baseline shows as changed in a fresh clone's `dvc status`, and a user's
    # first `dvc exp run -S ...` would rerun it (and `dvc metrics diff` compare against stale
    # numbers). Uncommitted edits in the workspace do not turn this red; committing them would.
    lock = yaml.safe_load(committed_bytes("dvc.lock"))
    deps = [(stage, dep["path"], dep["md5"]) for stage, entry in lock["stages"].items() for dep in entry.get("deps", [])]
    files = set(subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.splitlines())
    md5 = {path: hashlib.md5(committed_bytes(path)).hexdigest() for path in {p for _, p, _ in deps} & files}
    assert {"stages/spectral.py", "tgo/geometry/spectral.py"} <= set(md5)  # the code deps were read
    stale = sorted({f"{stage}: {path}" for stage, path, h in deps if path in md5 and md5[path] != h})
    assert not stale, ("the committed dvc.lock is stale: rerun the demo and commit its dvc.lock and reports/ "
                       f"(README, Adding a metric, step 6): {stale}")


@pytest.mark.parametrize("stage", STAGES)
def test_every_output_persists(stage):
    # DVC deletes a stage's outputs before it runs the command unless they persist; the stages
    # replace their outputs only when they finish, so a run that fails or is stopped keeps the last
    # results (README, When a run fails or is stopped).
    spec = STAGES[stage]
    outputs = [o for key in ("outs", "metrics", "plots") for o in spec.get(key, [])]
    assert outputs
    for out in outputs:
        path, options = next(iter(out.items())) if isinstance(out, dict) else (out, {})
        assert options.get("persist") is True, f"{stage}: {path} has no persist: true"


def test_the_analysis_stages_are_those_of_tgo_runs():
    """dvc.yaml runs, for the pipeline's model and for each zoo model, the analysis stages of
    tgo.runs.STAGES (the list the report, the claims and the tests read), in its order."""
    from tgo.runs import STAGES as ANALYSIS
    assert list(DVC_YAML["stages"]) == ["prepare", "train", "extract", *ANALYSIS, "report", "zoo_model",
                                        "zoo_extract", *(f"zoo_{s}" for s in ANALYSIS), "compare"]
