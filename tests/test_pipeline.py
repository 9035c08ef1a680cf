"""End to end: the real `dvc repro`, `dvc exp run -S` and `dvc metrics diff` on a micro config."""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from micro import (ENV, REPO, audited_stages, copy_project, git_commit, micro_config, run, stage_ok,
                   undeclared_reads, write_params)
from tgo import claims
from tgo.runs import STAGES as ANALYSIS

STAGES = ("prepare", "train", "extract", *ANALYSIS, "report", "compare")
AUDIT = REPO / "tests" / "audit"  # its sitecustomize records the files each stage reads


def ran(output):
    return set(re.findall(r"Running stage '(\w+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("project"))
    write_params(root, micro_config())
    git_commit(root, "micro project")
    return root


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    """{stage: paths it opened for reading during the first `dvc repro`} (filled by that test)."""
    return tmp_path_factory.mktemp("reads")


def test_repro_then_everything_skipped(project, reads):
    out = run(["dvc", "repro"], project, env={"PYTHONPATH": str(AUDIT), "TGO_READ_AUDIT": str(reads)}).stdout
    assert ran(out) == set(STAGES)
    for path in ("reports/report.html", "reports/metrics/train.json", "reports/metrics/spectral.json",
                 "reports/metrics/tokens.json", "reports/metrics/correlation.json", "reports/tokens/signatures.csv",
                 "reports/spectral/metrics.csv", "reports/figures/training.png", "reports/metrics/verdicts.json",
                 "dvc.lock"):
        assert (project / path).exists(), path
    spectral = json.loads((project / "reports/metrics/spectral.json").read_text())
    final = spectral["cls"]["final_norm"]
    assert final["effective_rank"] > 1
    assert final["effective_rank_ci_low"] < final["effective_rank"] < final["effective_rank_ci_high"]
    git_commit(project, "baseline")

    again = run(["dvc", "repro"], project).stdout
    assert ran(again) == set()
    assert all(f"Stage '{s}' didn't change, skipping" in again for s in STAGES)


def test_a_remote_carries_the_run_to_a_fresh_clone(project, tmp_path):
    """Train and analyse on one machine, review on another: dvc push to a remote, git clone and
    dvc pull elsewhere, and dvc repro has nothing to do."""
    # The cache links into the workspace instead of holding a second copy (cache.type in .dvc/config).
    act = next((project / "data/activations").rglob("residual.npy"))
    assert act.stat().st_nlink > 1 or act.is_symlink()
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "store", str(remote)], project)
    git_commit(project, "a remote")
    run(["dvc", "push"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "pull"], clone)
    assert (clone / "data/activations").is_dir() and (clone / "reports/report.html").exists()
    out = run(["dvc", "repro"], clone).stdout
    assert ran(out) == set(), out
    assert "up to date" in run(["dvc", "status"], clone).stdout
    run(["git", "reset", "-q", "--hard", "HEAD~1"], project)  # the later tests start from the baseline


def test_every_file_a_stage_reads_is_a_declared_dep(project, reads):
    assert audited_stages(reads) == set(STAGES)
    problems = undeclared_reads(project, reads)
    assert not problems, f"stages read files dvc.yaml does not list as deps: {problems}"
    report = json.loads(next(p for p in reads.glob("report.*.json")).read_text())
    assert str(project / "reports/metrics/tokens.json") in report["reads"]  # the audit sees real reads


def test_exp_run_spectral_param_reruns_spectral_and_report_only(project):
    out = run(["dvc", "exp", "run", "-S", "spectral.alpha_ranks=[3,12]"], project).stdout
    assert ran(out) == {"spectral", "report"}
    diff = run(["dvc", "metrics", "diff", "--json"], project).stdout
    changed = json.loads(diff)["reports/metrics/spectral.json"]
    assert "cls.final_norm.alpha" in changed
    assert changed["cls.final_norm.alpha"]["old"] != changed["cls.final_norm.alpha"]["new"]
    assert {"cls.final_norm.alpha_ci_low", "cls.final_norm.alpha_ci_high"} <= set(changed)  # its interval moves too
    assert "cls.final_norm.effective_rank" not in changed  # alpha's window touches nothing else

    shown = run(["dvc", "exp", "show", "--md"], project).stdout
    assert "alpha_ranks" in shown
    assert "tgo1.erank_rises.verdict" in shown and "probing.msym_pd.value" in shown  # the verdict columns
    assert "tgo1.erank_rises.ci_low" in shown


def test_exp_run_tokens_param_reruns_tokens_and_report_only(project):
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout", "-f"], project)
    out = run(["dvc", "exp", "run", "-S", "tokens.n_clusters=2"], project).stdout
    assert ran(out) == {"tokens", "report"}
    assert "Token geometry" in (project / "reports/report.html").read_text()


def test_exp_run_ci_level_reruns_the_stages_with_intervals(project):
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout", "-f"], project)
    out = run(["dvc", "exp", "run", "-S", "ci.level=0.8"], project).stdout
    assert ran(out) == {*ANALYSIS, "report", "compare"}
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project).stdout)["reports/metrics/spectral.json"]
    assert "cls.final_norm.effective_rank" not in diff  # the estimate stays, its interval narrows
    low = diff["cls.final_norm.effective_rank_ci_low"]
    assert low["new"] > low["old"]


@pytest.mark.parametrize("param", ["mi.n_channels=3", "qk.angle_bins=9"])
def test_exp_run_mi_qk_params_rerun_their_stage_and_report_only(project, param):
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout", "-f"], project)
    out = run(["dvc", "exp", "run", "-S", param], project).stdout
    assert ran(out) == {param.split(".")[0], "report"}
    assert "Neuron statistics and attention" in (project / "reports/report.html").read_text()


def contents(root):
    """Every file under root with the SHA-256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("bad", [["spectral.alpha_ranks=[5]"],
                                 ["train.lr=1e30", "train.clip_grad=0", "train.warmup_epochs=0"]],
                         ids=["spectral_param", "train_nan"])
def test_a_failed_run_keeps_the_last_results(project, bad):
    """DVC deletes a stage's outputs before it runs the stage unless they persist: a run that fails
    inside a stage (a bad value the stage judges, a loss that turns NaN) leaves that stage's last
    results, and every other output, as they were, byte for byte (DVC may rewrite a cached file
    with the same bytes)."""
    run(["git", "checkout", "HEAD", "--", "."], project)
    run(["dvc", "checkout", "-f"], project)
    outputs = ("data/prepared", "data/checkpoints", "data/activations", "reports")
    before = {o: contents(project / o) for o in outputs}
    proc = run(["dvc", "exp", "run", *(a for b in bad for a in ("-S", b))], project, check=False)
    stage = "spectral" if bad[0].startswith("spectral") else "train"
    assert proc.returncode != 0 and f"tgo {stage}: error:" in proc.stderr, proc.stdout + proc.stderr
    assert {o: contents(project / o) for o in outputs} == before
    run(["git", "checkout", "HEAD", "--", "."], project)
    assert run(["git", "status", "--short"], project).stdout == ""


def test_exp_run_train_param_reruns_from_train(project):
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout", "-f"], project)
    out = run(["dvc", "exp", "run", "-S", "train.epochs=3"], project).stdout
    assert ran(out) == {"train", "extract", *ANALYSIS, "report"}
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project).stdout)
    assert diff["reports/metrics/train.json"]["epochs"] == {"old": 2, "new": 3, "diff": 1}


def test_training_that_changes_nothing_credits_nothing_to_training(project):
    """train.lr=1e-12: every checkpoint holds (nearly) the untrained weights, so no claim may be
    credited to training and no claim about training is observed, whatever the verdicts say."""
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout", "-f"], project)
    run(["dvc", "exp", "run", "-S", "train.lr=1e-12"], project)
    verdicts = json.loads((project / "reports/metrics/verdicts.json").read_text())
    records = {f"{p}.{c}": v for p, claims in verdicts.items() for c, v in claims.items()}
    assert not [c for c, v in records.items() if v["origin"] == "training"], records
    trends = [c for c, v in records.items() if v["init_verdict"] is None]
    assert trends and all(records[c]["verdict"] != "observed" for c in trends)
    html = (project / "reports/report.html").read_text()
    assert "produced by training" not in html


def test_the_verdicts_table_shows_each_experiment_beside_the_baseline(project):
    """`make verdicts` on the experiments above: a row per claim, a column per experiment; the
    lr=1e-12 run credits nothing to training, so none of its cells is a bare `yes` (observed,
    produced by training), and each of its cells matches its own verdicts.json."""
    proc = run([sys.executable, "-m", "tgo.claims.table"], project, env={"COLUMNS": "400"})
    lines = proc.stdout.splitlines()
    header = lines[0].split()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line.split() and "." in line.split()[0]
            and len(line.split()) == len(header)}
    assert set(rows) >= set(claims.REGISTRY) and header[:2] == ["claim", "workspace"]
    # The experiment, as DVC lists it (the workspace may hold the same params after its run).
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    frozen, data = next((r["name"], r["data"]) for x in shown for e in x.get("experiments") or [] for r in e["revs"]
                        if r["data"]["params"]["params.yaml"]["data"]["train"]["lr"] == 1e-12)
    assert any(line.startswith(f"{frozen}: ") and "train.lr=1e-12" in line for line in lines)
    cells = {claim: row[header.index(frozen) - 1] for claim, row in rows.items()}
    assert "yes" not in cells.values(), cells
    verdicts = data["metrics"]["reports/metrics/verdicts.json"]["data"]
    for claim, cell in cells.items():
        paper, name = claim.split(".")
        word = cell.split("/")[0] if cell.startswith("yes/") else cell  # yes/init, yes/? (but n/a, n/c)
        assert word == TABLE_WORDS[verdicts[paper][name]["verdict"]], claim


TABLE_WORDS = {"observed": "yes", "partly observed": "part", "not observed": "no", "inconclusive": "?",
               "not applicable": "n/a", "not computable": "n/c"}


def test_temp_experiment_runs_its_own_code(project):
    # `dvc exp run --temp` (and a queued experiment) runs in a copy of the tree under .dvc/tmp: the
    # stages must import that copy's tgo, not the editable install's, or dvc.lock would record code
    # that did not run.
    run(["git", "checkout", "HEAD", "--", "."], project)
    run(["dvc", "checkout", "-f"], project)
    before = json.loads((project / "reports/metrics/correlation.json").read_text())["lowest_mean_r"]
    module = project / "tgo/geometry/correlation.py"
    source = module.read_text()
    doubled = source.replace("np.where(pairs > 0, sum_r / pairs", "np.where(pairs > 0, 2 * sum_r / pairs", 1)
    assert doubled != source  # the line this test edits is still there
    module.write_text(doubled)
    try:
        assert "correlation" in ran(run(["dvc", "exp", "run", "--temp", "-n", "doubled"], project).stdout)
        shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
        exps = [r for x in shown for e in x.get("experiments") or [] for r in e["revs"] if r["name"] == "doubled"]
        after = exps[0]["data"]["metrics"]["reports/metrics/correlation.json"]["data"]["lowest_mean_r"]
        assert after == pytest.approx(2 * before, rel=1e-12)
    finally:
        module.write_text(source)


def test_interrupted_exp_run_resumes_when_run_again(project, tmp_path):
    run(["git", "checkout", "HEAD", "--", "."], project)
    run(["dvc", "checkout", "-f"], project)
    cmd = ["dvc", "exp", "run", "-S", "train.epochs=40", "-S", "train.checkpoint_epochs=[0,1,20,40]"]
    log = tmp_path / "interrupted.log"
    with open(log, "w") as out:
        # Ctrl-C must reach dvc even when the tests run as a background job, which ignores SIGINT.
        proc = subprocess.Popen(cmd, cwd=project, env=ENV, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        resume = project / "data/train-work/resume.pt"
        deadline = time.time() + 300
        while not resume.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals dvc and the stage it runs
        proc.wait(timeout=120)
    assert resume.exists() and not (project / "data/checkpoints/epoch_040.safetensors").exists(), log.read_text()
    assert "tgo train: stopped before it finished" in log.read_text() and "Traceback" not in log.read_text()

    out = run(cmd, project).stdout
    assert "resuming from epoch" in out
    # The same run never interrupted, straight from the stage, gives the same weights bit for bit.
    again = tmp_path / "again"
    (again / "data").mkdir(parents=True)
    os.symlink(project / "data/prepared", again / "data/prepared")
    stage_ok("train", again, yaml.safe_load((project / "params.yaml").read_text()))
    for name in ("epoch_001", "epoch_020", "epoch_040"):
        assert (project / f"data/checkpoints/{name}.safetensors").read_bytes() == \
            (again / f"data/checkpoints/{name}.safetensors").read_bytes(), name
