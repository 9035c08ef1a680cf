"""Training killed with SIGKILL resumes from the last complete epoch, bit for bit, also after a
change of a param that does not determine the weights; a bad value in between deletes nothing.
Extraction killed with SIGKILL resumes at the checkpoint where it stopped, bit for bit."""
import shutil
import signal
import subprocess
import sys
import time

from micro import ENV, REPO, git_commit, micro_config, run_stage, stage_error, stage_ok, write_params

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
