"""Data-parallel training: the train stage under torchrun with two gloo processes on the CPU follows
the single-process run with the same global batch."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from micro import micro_config, run_stage, stage_error, stage_ok


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    single = tmp_path_factory.mktemp("single")
    stage_ok("prepare", single, micro_config())
    double = tmp_path_factory.mktemp("double")
    shutil.copytree(single / "data", double / "data")
    out = {"single": stage_ok("train", single, micro_config()),
           "double": stage_ok("train", double, micro_config(train={"nproc_per_node": 2}))}
    return single, double, out


def test_two_processes_match_one_with_the_same_global_batch(runs):
    single, double, _ = runs
    names = sorted(p.name for p in (single / "data/checkpoints").glob("epoch_*.safetensors"))
    assert names == sorted(p.name for p in (double / "data/checkpoints").glob("epoch_*.safetensors"))
    assert len(names) == 3
    for name in names:
        a = load_file(str(single / "data/checkpoints" / name))
        b = load_file(str(double / "data/checkpoints" / name))
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
    ma, mb = (json.loads((d / "reports/metrics/train.json").read_text()) for d in (single, double))
    assert mb["val_top1"] == pytest.approx(ma["val_top1"], abs=1e-9)
    assert mb["train_loss"] == pytest.approx(ma["train_loss"], rel=1e-4)


def test_only_rank_zero_reports(runs):
    _, double, out = runs
    stdout = out["double"].stdout
    assert "torch.distributed.run --nproc_per_node=2 --standalone" in stdout
    assert stdout.count("final val top-1") == 1 and stdout.count("epoch 2: train loss") == 1
    assert (double / "reports/train/metrics.json").exists()
    assert json.loads((double / "data/checkpoints/config.json").read_text())["checkpoints"] == [0, 1, 2]


def test_batch_that_does_not_split_is_an_error(runs):
    single, _, _ = runs
    proc = run_stage("train", single, micro_config(train={"nproc_per_node": 3}))
    stage_error(proc, "train", "train.batch_size=16", "3 processes")
