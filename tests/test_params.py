"""Bad params: every value below stops its stage with one line `tgo <stage>: error: ...` that names
the key, the value and what is allowed, exit code 2, before the stage writes or deletes anything.
The stages run in this process on a micro workspace whose every output exists (conftest.py)."""
import csv
import math
import re
import shutil

import pytest
import yaml
from safetensors.numpy import load_file

from micro import REPO, fails_before_writing, micro_config, run_inprocess
from tgo import params as P
from tgo.runs import STAGES

# (stage, {group: {key: value}}, words the error line must contain)
BAD = [
    ("train", {"train": {"epochs": "abc"}}, ("train.epochs=abc", "an integer >= 1")),
    ("train", {"train": {"batch_size": 0}}, ("train.batch_size=0", "an integer >= 1")),
    ("train", {"train": {"eval_batch_size": 0}}, ("train.eval_batch_size=0", "an integer >= 1")),
    ("extract", {"extract": {"batch_size": 0}}, ("extract.batch_size=0", "an integer >= 1")),
    ("train", {"train": {"lr": -1}}, ("train.lr=-1", "a number > 0")),
    ("train", {"train": {"lr": math.nan}}, ("train.lr=nan", "a number > 0")),
    ("train", {"train": {"label_smoothing": 1.5}}, ("train.label_smoothing=1.5", "in [0, 1)")),
    ("extract", {"extract": {"probe_size": "abc"}}, ("extract.probe_size=abc", "an integer >= 2")),
    ("spectral", {"spectral": {"alpha_ranks": [2.5, 10]}}, ("spectral.alpha_ranks=[2.5, 10]", "2 integers >= 1")),
    ("spectral", {"spectral": {"alpha_ranks": [5]}}, ("spectral.alpha_ranks=[5]", "2 integers >= 1")),
    ("spectral", {"spectral": {"alpha_ranks": [5, 6]}}, ("spectral.alpha_ranks=[5, 6]", "at least 3 ranks")),
    ("spectral", {"spectral": {"cosine_max_samples": 1}}, ("spectral.cosine_max_samples=1", "null or an integer >= 2")),
    ("mi", {"mi": {"reference": [1]}}, ("mi.reference=[1]", "null or a list of 2 integers >= 0")),
    ("mi", {"mi": {"estimator": "kde"}}, ("mi.estimator=kde", "one of ksg, binned")),
    ("mi", {"mi": {"n_shuffles": 0}}, ("mi.n_shuffles=0", ">= 1")),
    ("mi", {"mi": {"max_images": 1}}, ("mi.max_images=1", ">= 2")),
    ("tokens", {"tokens": {"n_permutations": 1}}, ("tokens.n_permutations=1", "an integer >= 2")),
    ("tokens", {"tokens": {"cluster_method": "dbscan"}}, ("tokens.cluster_method=dbscan", "kmeans, agglomerative")),
    # one image has no interval (a jackknife leaves images out)
    ("correlation", {"correlation": {"max_images": 1}}, ("correlation.max_images=1", ">= 2")),
    ("qk", {"qk": {"max_images": 1}}, ("qk.max_images=1", ">= 2")),
    ("qk", {"qk": {"angle_bins": 1}}, ("qk.angle_bins=1", ">= 2")),
    ("prepare", {"prepare": {"image_size": -1}}, ("prepare.image_size=-1", "an integer >= 1")),
    ("prepare", {"prepare": {"train_per_class": 0}}, ("prepare.train_per_class=0", "an integer >= 1")),
    ("prepare", {"prepare": {"source": "imagenet"}}, ("prepare.source=imagenet", "synthetic, imagefolder, imagenet100")),
    ("prepare", {"prepare": {"resize": 8}}, ("prepare.resize=8", "prepare.image_size=16")),
    ("train", {"model": {"depth": 0}}, ("model.depth=0", "null or an integer >= 1")),
    ("train", {"model": {"patch_size": 0}}, ("model.patch_size=0", "null or an integer >= 1")),
    ("train", {"train": {"epochs": 0, "checkpoint_epochs": [0]}}, ("train.epochs=0", "an integer >= 1")),
    ("train", {"train": {"checkpoint_epochs": [0, 5]}}, ("train.checkpoint_epochs=[0, 5]", "beyond train.epochs=2")),
    ("train", {"train": {"amp": "fp16"}}, ("train.amp=fp16", "null or one of bf16")),
    ("train", {"train": {"augment": "foo"}}, ("train.augment=foo", "one of light, deit")),
    ("train", {"train": {"warmup_epochs": -1}}, ("train.warmup_epochs=-1", "a number >= 0")),
    ("train", {"train": {"nproc_per_node": 0}}, ("train.nproc_per_node=0", "an integer >= 1")),
    ("train", {"train": {"nproc_per_node": 3}}, ("train.batch_size=16", "does not split over 3 processes")),
    ("train", {"train": {"nnodes": 2}}, ("train.rdzv_endpoint=null", "host:port")),
    ("train", {"train": {"compile": "yes"}}, ("train.compile=yes", "true or false")),
    ("train", {"train": {"rrc_scale": [0.5, 0.2]}}, ("train.rrc_scale=[0.5, 0.2]", "must not exceed")),
    # -S +train.epoch=3: Hydra adds the key; nothing reads it, so it is refused.
    ("train", {"train": {"epoch": 3}}, ("train.epoch: unknown key", "did you mean train.epochs?")),
]


def _case_id(case):
    stage, overrides, _ = case
    return f"{stage}-" + "-".join(f"{g}.{k}" for g, v in overrides.items() for k in v)


@pytest.mark.parametrize("stage, overrides, needles", BAD, ids=[_case_id(c) for c in BAD])
def test_bad_value_is_one_line_and_changes_nothing(workspace, capsys, stage, overrides, needles):
    fails_before_writing(stage, workspace, micro_config(**overrides), capsys, *needles)


def test_missing_key(workspace, capsys):
    params = micro_config()
    del params["train"]["seed"]
    fails_before_writing("train", workspace, params, capsys, "train.seed: missing from params.yaml")


def test_unknown_group(workspace, capsys):
    # -S +foo.bar=1: every stage refuses a params.yaml with a group nothing reads.
    params = {**micro_config(), "foo": {"bar": 1}}
    fails_before_writing("spectral", workspace, params, capsys, "foo: unknown params group")


def test_missing_group(workspace, capsys):
    params = micro_config()
    del params["qk"]
    fails_before_writing("qk", workspace, params, capsys, "qk: group missing")


def test_valid_values_pass_unchanged():
    # What a stage gets is exactly what params.yaml says: the schema checks, it never fills in or converts.
    params = micro_config()
    for group, values in params.items():
        assert P.validate(group, dict(values)) == values


@pytest.mark.parametrize("group, key, value", [
    ("train", "lr", 1), ("train", "warmup_epochs", 0.5), ("train", "amp", None), ("model", "depth", None),
    ("mi", "reference", [0, 3]), ("spectral", "cosine_max_samples", None), ("train", "checkpoint_epochs", []),
])
def test_edge_values_are_accepted(group, key, value):
    values = micro_config()[group]
    values[key] = value
    assert P.validate(group, values)[key] == value


def test_readme_parameter_reference_is_generated_from_the_schema():
    assert P.markdown() in (REPO / "README.md").read_text(), \
        "README.md's parameter reference is stale: paste the output of `python -m tgo.params`"


def test_the_parameter_reference_reads_the_same_in_a_terminal_and_rendered():
    """No HTML entities (shown literally in a terminal) and no `<...>` outside a code span (an HTML
    tag that a renderer would swallow), nor a `|` that would split a table cell."""
    for line in P.markdown().splitlines():
        plain = re.sub(r"`[^`]*`", "", line)
        assert not re.search(r"&(#x?[0-9a-f]+|[a-z]+);", line, re.I), line
        assert not re.search(r"<[A-Za-z/]", plain), line
        if line.startswith("| `"):
            assert plain.count("|") == 4, line


# --- every param moves its stage's outputs --------------------------------------------------------

PIPELINE = ("prepare", "train", "extract", *STAGES)  # the stages of one model (the zoo's: below)
DVC_STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _param_keys(entries):
    """(group, key) of every param a dvc.yaml stage lists: group.key, or a whole group (`group`, or a
    zoo entry's `zoo.${key}`: every key of its schema)."""
    out = []
    for e in entries:
        group, _, key = e.partition(".")
        out += [(group, key)] if key and "${key}" not in key else [(group, k) for k in P.SCHEMA[group]]
    return out


KEYS = [(stage, group, key) for stage in PIPELINE for group, key in _param_keys(DVC_STAGES[stage]["params"])]


def _other(param, value):
    """A valid value other than `value` that moves the outputs on the micro config: the schema's
    `other`, else another choice, the opposite bool, a pair's first item + 1, half a float (0.5 for
    0), an int + 1."""
    if param.other is not None:
        return param.other
    if param.choices:
        return next(c for c in [*param.choices, None] if c != value)
    if param.kind is bool:
        return not value
    if param.kind == "pair":
        return [value[0] + 1, value[1]]
    if param.kind is float:
        return value / 2 if value else 0.5
    return value + 1


def _results(root, stage):
    """What the stage computed, from its DVC outputs: the rows of its tables (.csv, .tsv) but the
    n_images column, which repeats a param; the bytes of its arrays (.npy) and of its checkpoints'
    tensors (.safetensors, without the metadata). JSON files are left out: they repeat params too."""
    out = {}
    for entry in DVC_STAGES[stage].get("outs", []):
        top = root / (next(iter(entry)) if isinstance(entry, dict) else entry)
        for path in sorted(top.rglob("*") if top.is_dir() else [top]):
            name = str(path.relative_to(root))
            if path.suffix in (".csv", ".tsv"):
                with open(path, newline="") as f:  # as text: nan reads back equal to nan
                    rows = list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
                out[name] = [{k: v for k, v in r.items() if k != "n_images"} for r in rows]
            elif path.suffix == ".npy":
                out[name] = path.read_bytes()
            elif path.suffix == ".safetensors":
                out[name] = {k: v.tobytes() for k, v in load_file(path).items()}
    return out


_BASELINES = {}


@pytest.mark.parametrize("stage, group, key", KEYS, ids=[f"{s}-{g}.{k}" for s, g, k in KEYS])
def test_every_param_moves_its_stages_outputs(workspace, tmp_path_factory, capsys, stage, group, key):
    """DVC users trust that `-S group.key=value` is a different experiment: the stage reads the key and
    computes with it. On a copy of the micro workspace the stage alone reruns with the key changed (its
    inputs are the micro run's), and what it computed must differ; a speed knob's must not (Param.same)."""
    param = P.SCHEMA[group][key]
    if param.untested:
        pytest.skip(param.untested)
    given = {group: dict(param.given or {})}
    cached = (stage, repr(given))
    if cached not in _BASELINES:
        root = tmp_path_factory.mktemp(f"moves-{stage}")
        shutil.copytree(workspace, root, dirs_exist_ok=True)
        stage_ok_inprocess(stage, root, micro_config(**given), capsys)
        _BASELINES[cached] = root, _results(root, stage)
    root, before = _BASELINES[cached]
    value = micro_config()[group][key]
    other = _other(param, value)
    stage_ok_inprocess(stage, root, micro_config(**{group: {**given[group], key: other}}), capsys)
    after = _results(root, stage)
    assert after, f"{stage} wrote nothing this test compares"
    if param.same or param.inert:
        why = param.inert or "a speed knob"
        assert after == before, f"{group}.{key}: {value} -> {other} moved {stage}'s outputs ({why})"
    else:
        assert after != before, f"{group}.{key}: {value} -> {other} left {stage}'s outputs unchanged"


# A zoo model of the micro config's shape: its stages (zoo_model, and the zoo_ twins of extract and
# the analysis stages, which take the same keys as the stages above) rerun with each key changed.
ZOO = {"m": {"name": "vit_tiny_patch16_224", "weights": None, "patch_size": 4, "depth": 2, "embed_dim": 32,
             "num_heads": 2, "mlp_ratio": None, "img_size": 16}}
ZOO_KEYS = _param_keys(DVC_STAGES["zoo_model"]["do"]["params"])


@pytest.mark.parametrize("group, key", ZOO_KEYS, ids=[f"{g}.{k}" for g, k in ZOO_KEYS])
def test_every_zoo_param_moves_the_zoo_models_outputs(workspace, tmp_path_factory, capsys, group, key):
    """As above for zoo model m: stages/zoo_model.py --zoo m, then extract --zoo m; its weights and
    activations move with each key of its entry (the number of heads moves only the activations), and
    not with extract.batch_size (a speed knob of both)."""
    param = P.SCHEMA[group][key]
    if param.untested:
        pytest.skip(param.untested)

    def run(root, params):
        for stage in ("zoo_model", "extract"):
            stage_ok_inprocess(stage, root, params, capsys, args=("--zoo", "m"))
        return {str(p.relative_to(root)): {k: v.tobytes() for k, v in load_file(p).items()}
                if p.suffix == ".safetensors" else p.read_bytes()
                for p in sorted((root / "data/zoo/m").rglob("*")) if p.suffix in (".safetensors", ".npy")}

    if "zoo" not in _BASELINES:
        root = tmp_path_factory.mktemp("moves-zoo")
        shutil.copytree(workspace, root, dirs_exist_ok=True)
        _BASELINES["zoo"] = root, run(root, micro_config(zoo=ZOO))
    root, before = _BASELINES["zoo"]
    value = ZOO["m"][key] if group == "zoo" else micro_config()[group][key]
    other = _other(param, value)
    changed = {"zoo": {"m": {**ZOO["m"], key: other}}} if group == "zoo" else {"zoo": ZOO, group: {key: other}}
    after = run(root, micro_config(**changed))
    assert any(name.endswith(".npy") for name in after), "the zoo model's stages wrote no activations"
    assert (after == before) == (param.same or bool(param.inert)), f"{group}.{key}: {value} -> {other}"


def stage_ok_inprocess(stage, root, params, capsys, args=()):
    proc = run_inprocess(stage, root, params, capsys, args)
    assert proc.returncode in (0, None), f"{stage} failed:\n{proc.stdout}\n{proc.stderr}"
