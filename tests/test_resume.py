"""Training killed with SIGKILL resumes from the last complete epoch, bit for bit, also after a
change of a param that does not determine the weights; a bad value in between deletes nothing.
Extraction killed with SIGKILL resumes at the checkpoint where it stopped, bit for bit. A stage
stopped by a signal (Ctrl-C, kill, the death of its `dvc`) says so on one line and resumes."""
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from micro import (ENV, REPO, git_commit, micro_config, rendered_lines, run_stage, stage_error, stage_ok,
                   write_params)

PARAMS = micro_config(prepare={"train_per_class": 100},
                      train={"epochs": 6, "batch_size": 20, "checkpoint_epochs": [0, 1, 3, 6]})


def workspaces(tmp_path, params, before, stage):
    """(ref, work): a micro workspace that ran the stages `before`, copied to work, and ref then
    running `stage` uninterrupted."""
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir()
    write_params(ref, params)
    subprocess.run(["git", "init", "-q"], cwd=ref, check=True)
    git_commit(ref, "init")
    for name in before:
        stage_ok(name, ref)
    shutil.copytree(ref, work)
    stage_ok(stage, ref)
    return ref, work


def kill_when(stage, work, path):
    """Start stages/<stage>.py in work and SIGKILL it the moment `path` exists."""
    proc = subprocess.Popen([sys.executable, str(REPO / "stages" / f"{stage}.py")], cwd=work, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, f"{stage} finished before it could be killed"


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    ref, work = workspaces(tmp_path, PARAMS, ["prepare"], "train")
    kill_when("train", work, work / "data/train-work/resume.pt")
    assert not (work / "data/checkpoints/config.json").exists()

    kept = sorted(p.name for p in (work / "data/train-work").iterdir())
    assert "resume.pt" in kept
    bad = {**PARAMS, "train": {**PARAMS["train"], "eval_batch_size": 0}}
    stage_error(run_stage("train", work, bad), "train", "train.eval_batch_size=0")
    assert sorted(p.name for p in (work / "data/train-work").iterdir()) == kept

    other = {**PARAMS, "train": {**PARAMS["train"], "eval_batch_size": 7}}  # evaluation only
    out = stage_ok("train", work, other).stdout
    assert "resuming from epoch" in out
    resumed_from = int(out.split("resuming from epoch ")[1].split()[0])
    assert 1 <= resumed_from < 6
    for name in ("epoch_000", "epoch_001", "epoch_003", "epoch_006"):
        a = (ref / f"data/checkpoints/{name}.safetensors").read_bytes()
        b = (work / f"data/checkpoints/{name}.safetensors").read_bytes()
        assert a == b, f"{name} differs after resume"
    assert not (work / "data/train-work").exists()
    assert (work / "reports/train/plots/metrics/val/top1.tsv").read_text().count("\n") == 6 + 1


EXTRACT_PARAMS = micro_config(prepare={"val_per_class": 100, "image_size": 32},
                              model={"depth": 4, "embed_dim": 64},
                              train={"epochs": 3, "checkpoint_epochs": [0, 1, 2, 3]},
                              extract={"probe_size": 400, "batch_size": 8})


def test_killed_extract_resumes_at_the_checkpoint_where_it_stopped(tmp_path):
    ref, work = workspaces(tmp_path, EXTRACT_PARAMS, ["prepare", "train"], "extract")
    kill_when("extract", work, work / "data/extract-work/epoch_001")  # the second checkpoint is done
    assert not (work / "data/activations").exists()
    assert not (work / "data/extract-work/epoch_002").exists(), "killed too late: the third checkpoint was done"

    out = stage_ok("extract", work).stdout
    assert "resuming: epoch_000, epoch_001 already extracted" in out and "starting at epoch_002" in out
    assert not (work / "data/extract-work").exists()
    for epoch in ("epoch_000", "epoch_001", "epoch_002", "epoch_003"):
        for f in sorted((ref / "data/activations" / epoch).iterdir()):
            assert f.read_bytes() == (work / "data/activations" / epoch / f.name).read_bytes(), f"{epoch}/{f.name}"


LONG = micro_config(train={"epochs": 100, "checkpoint_epochs": [0, 100]})


def wait_for(path, proc):
    deadline = time.time() + 120
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert path.exists(), f"{path} never appeared"


def stopped_line(stderr, stage, scratch):
    """The stage says, on a line of its own among its progress bars, that it stopped, that its
    outputs are the last run's, and where it resumes from; no traceback."""
    said = f"tgo {stage}: stopped before it finished; its outputs are as the last complete run left them. Run the " \
           f"same command again to resume from {scratch} ("
    assert "Traceback" not in stderr, stderr
    assert any(line.startswith(said) for line in rendered_lines(stderr)), stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_training_with_one_line_and_it_resumes(tmp_path, workspace, sig):
    """Ctrl-C, `kill` or a scheduler's time limit: one line saying what happened and what to do,
    exit 130, nothing published, and the same command resumes."""
    (tmp_path / "data").mkdir()
    shutil.copytree(workspace / "data/prepared", tmp_path / "data/prepared")
    write_params(tmp_path, LONG)
    # A background job (make test &) ignores SIGINT, and its children inherit that: restore it, as a
    # terminal has it.
    proc = subprocess.Popen([sys.executable, str(REPO / "stages/train.py")], cwd=tmp_path, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(tmp_path / "data/train-work/resume.pt", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    stopped_line(err.decode(), "train", "data/train-work")
    assert not (tmp_path / "data/checkpoints").exists() and not (tmp_path / "reports/train").exists()
    assert not list(tmp_path.glob("**/.*.tmp*")), "the stopped stage left scratch behind"
    assert "resuming from epoch" in stage_ok("train", tmp_path).stdout


def state(pid):
    """A process's state letter (R, S, Z, ...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_stage_stops_when_the_dvc_that_started_it_is_killed(tmp_path, workspace):
    """SIGKILL to `dvc repro` during training: the trainer must not finish unseen (the next `dvc
    repro` would train again from the start); it stops, and the next run resumes."""
    (tmp_path / "data").mkdir()
    shutil.copytree(workspace / "data/prepared", tmp_path / "data/prepared")
    write_params(tmp_path, LONG)
    log = tmp_path / "stage.log"
    # A stand-in for dvc: starts the stage as dvc does (a child process) and waits for it.
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
                               "print(p.pid, flush=True); p.wait()", sys.executable, str(REPO / "stages/train.py")],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    child = int(parent.stdout.readline())
    wait_for(tmp_path / "data/train-work/resume.pt", parent)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 60
    while state(child) not in (None, "Z") and time.time() < deadline:
        time.sleep(0.05)
    assert state(child) in (None, "Z"), "the trainer ran on after its parent was killed"
    stopped_line(log.read_text(), "train", "data/train-work")
    assert not (tmp_path / "data/checkpoints").exists()
    assert "resuming from epoch" in stage_ok("train", tmp_path).stdout


def test_a_signal_inside_a_progress_bars_constructor_still_stops_with_one_line():
    """The signal can land while a tqdm bar is half built (here: where it picks its screen line); that
    bar's finaliser must not print a traceback after the stop line."""
    code = ("import tqdm\n"
            "from tgo.io import run_stage\n"
            "def signal_here(*args): raise KeyboardInterrupt\n"
            "tqdm.tqdm._get_free_pos = signal_here\n"
            "run_stage('train', lambda: tqdm.tqdm(range(3)))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "tgo train: stopped before it finished; its outputs are as the last complete run left " \
                          "them. Run the same command again\n", proc.stderr
