"""Each claim across training seeds and analysis variants (tgo.robustness), end to end on a
micro project: README's sequence of commands, and the aggregate's JSON read back against each
experiment's own verdicts.json as `dvc exp show` reports it."""
import json
import re
import sys

import numpy as np
import pytest
import yaml

from micro import REPO, compose, copy_project, git_commit, micro_config, run, write_params
from tgo.claims import REGISTRY
from tgo.robustness import read_variants
from tgo.params import SCHEMA, validate

ROBUSTNESS = [sys.executable, "-m", "tgo.robustness"]
VARIANTS = ("alpha-5-50", "clusters-6", "mi-k-5")  # of conf/variants.yaml, valid at the micro scale


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("robustness"))
    write_params(root, micro_config())
    git_commit(root, "micro project")
    run(["dvc", "repro"], root)
    git_commit(root, "baseline")
    return root


def experiment_runs(project):
    """(params, verdicts.json data) of every experiment of HEAD, as `dvc exp show` has them."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    return [(r["data"]["params"]["params.yaml"]["data"], r["data"]["metrics"]["reports/metrics/verdicts.json"]["data"])
            for x in shown for e in x.get("experiments") or [] for r in e["revs"]]


def test_three_seeds_and_three_variants_in_one_sequence(project):
    assert "One seed (train.seed=0)" in (project / "reports/report.html").read_text()

    run(ROBUSTNESS + ["queue", "seeds", "1", "2"], project)
    run(ROBUSTNESS + ["queue", "variants", *VARIANTS], project)
    ran = run(["dvc", "exp", "run", "--run-all"], project).stdout
    printed = run(ROBUSTNESS, project).stdout
    assert re.search(r"3 seeds, 3 of 5 variants -> reports/robustness/index.html", printed), printed

    agg = json.loads((project / "reports/robustness/robustness.json").read_text())
    assert list(agg["seeds"]) == ["0", "1", "2"] and list(agg["variants"]) == list(VARIANTS)
    assert list(agg["claims"]) == list(REGISTRY)
    variants = read_variants(project / "conf/variants.yaml")
    committed = json.loads((project / "reports/metrics/verdicts.json").read_text())
    runs = {"0": committed}
    for params, verdicts in experiment_runs(project):
        changed = {f"{g}.{k}": v for g, group in params.items() if isinstance(group, dict) for k, v in group.items()
                   if micro_config()[g][k] != v}
        key = str(params["train"]["seed"]) if set(changed) == {"train.seed"} else \
            next(v for v in VARIANTS if changed == variants[v])
        runs[key] = verdicts
    assert sorted(runs) == sorted(["0", "1", "2", *VARIANTS])
    for cid, c in agg["claims"].items():
        paper, name = cid.split(".")
        mine = {s: runs[s][paper][name] for s in ("0", "1", "2")}
        assert {s: x["verdict"] for s, x in c["seeds"].items()} == {s: m["verdict"] for s, m in mine.items()}, cid
        assert c["observed_in"] == sum(m["verdict"] == "observed" for m in mine.values())
        values = [m["value"] for m in mine.values() if m.get("value") is not None]
        if len(values) > 1:
            assert c["value"]["mean"] == pytest.approx(np.mean(values), rel=1e-12)
            assert c["value"]["between_seed_sd"] == pytest.approx(np.std(values, ddof=1), rel=1e-9, abs=1e-15)
        assert {v: x["verdict"] for v, x in c["variants"].items()} == \
            {v: runs[v][paper][name]["verdict"] for v in VARIANTS}, cid
    # The seeds train again; the variants reuse the trained checkpoints and the activations.
    assert ran.count("Running stage 'train'") == 2, ran
    assert ran.count("Running stage 'extract'") == 2, ran

    # Run again, the sequence queues nothing that has run.
    again = run(ROBUSTNESS + ["queue", "seeds", "1", "2"], project).stdout
    assert "seed 2: already run" in again and "--queue" not in again, again

    # The report links to the aggregate once it is made for its params.
    out = run(["dvc", "repro"], project).stdout
    assert "Running stage 'report'" in out
    page = (project / "reports/report.html").read_text()
    assert "robustness/index.html" in page and "3 training seeds (0, 1, 2)" in page
    assert "Across training seeds" in (project / "reports/robustness/index.html").read_text()


def test_the_shipped_variants_are_valid_params():
    """Every override of conf/variants.yaml names a param and gives it a value the schema accepts."""
    for vid, overrides in read_variants(REPO / "conf/variants.yaml").items():
        params = yaml.safe_load(compose([f"{k}={json.dumps(v)}" for k, v in overrides.items()]))
        for group in SCHEMA:
            validate(group, params[group])
        for key, value in overrides.items():
            group, name = key.split(".")
            assert params[group][name] == value, (vid, key)
