"""train: a timm ViT on the prepared data; checkpoints to data/checkpoints/ (by way of
data/train-work/, from which a killed run resumes), logs via DVCLive.
With train.nproc_per_node x train.nnodes > 1 it relaunches itself under torchrun (DDP)."""
import os
from contextlib import nullcontext

import torch
from dvclive import Live

from tgo import distributed
from tgo.checkpoints import (CHECKPOINTS, TRAIN_LOCK, TRAIN_WORK, checkpoint_name, config_hash, publish,
                             save_weights, write_config)
from tgo.data import load_prepared
from tgo.io import TGOError, atomic_dir, run_stage, single_writer, write_json
from tgo.models import build_model, load_external_weights, model_kwargs
from tgo.params import load
from tgo.training import evaluate, train, weights_hash

DATA, LIVE, METRICS = "data/prepared", "reports/train", "reports/metrics/train.json"


def main():
    params = load("model", "train")
    mcfg, tcfg = params["model"], params["train"]
    train_images, train_labels, manifest = load_prepared(DATA, "train")
    val_images, val_labels, _ = load_prepared(DATA, "val")
    kwargs = model_kwargs(mcfg, len(manifest["classes"]), manifest["image_size"])
    external = load_external_weights(kwargs, tcfg["weights"]) if tcfg["weights"] else None
    if not external and tcfg["batch_size"] > len(train_labels):
        raise TGOError(f"train.batch_size={tcfg['batch_size']} exceeds the train split ({len(train_labels)} "
                       "images); lower it")
    # One trainer at a time (torchrun's workers run under their launcher's lock).
    with single_writer(TRAIN_LOCK, TRAIN_WORK) if "LOCAL_RANK" not in os.environ else nullcontext():
        if external:
            return use_external(*external, tcfg, manifest, (val_images, val_labels))
        return run(mcfg, tcfg, kwargs, manifest, (train_images, train_labels), (val_images, val_labels))


def run(mcfg, tcfg, kwargs, manifest, train_data, val_data):
    n_procs = tcfg["nproc_per_node"] * tcfg["nnodes"]
    if n_procs > 1 and "LOCAL_RANK" not in os.environ:  # DVC started us: launch the workers as we were started
        entry = ["-m", __spec__.name] if __spec__ else [__file__]
        return distributed.torchrun(entry, tcfg["nproc_per_node"], tcfg["nnodes"], tcfg["rdzv_endpoint"])
    rank = distributed.init() if n_procs > 1 else 0
    torch.manual_seed(tcfg["seed"])
    model = build_model(kwargs).to(distributed.pick_device())
    this_run = weights_hash(kwargs, tcfg, manifest["splits"])
    TRAIN_WORK.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    if rank > 0:  # a worker of a distributed run: rank 0 logs and writes
        train(model, train_data, val_data, tcfg, TRAIN_WORK, this_run, lambda row: None)
        return
    print(f"training {mcfg['name']} ({n_params / 1e6:.2f} M params) for {tcfg['epochs']} epochs "
          f"on {len(train_data[1])} images" + (f", {n_procs} processes" if n_procs > 1 else ""))

    with Live(LIVE, save_dvc_exp=False, dvcyaml=False) as live:
        def log_epoch(row):
            live.step = row["epoch"]
            live.log_metric("train/loss", row["train_loss"])
            live.log_metric("val/loss", row["val_loss"])
            live.log_metric("val/top1", row["val_top1"])
            live.log_metric("val/top5", row["val_top5"])
            live.log_metric("lr", row["lr"])
            live.next_step()

        history, schedule = train(model, train_data, val_data, tcfg, TRAIN_WORK, this_run, log_epoch)
    publish(TRAIN_WORK, CHECKPOINTS, kwargs, schedule, manifest["classes"], this_run)
    last = history[-1]
    write_json(METRICS, {"val_top1": last["val_top1"], "val_top5": last["val_top5"],
                         "val_loss": last["val_loss"], "train_loss": last["train_loss"],
                         "epochs": tcfg["epochs"], "params_M": round(n_params / 1e6, 3)})
    print(f"final val top-1 {last['val_top1']:.2f}%; checkpoints at epochs {schedule} -> {CHECKPOINTS}")


def use_external(model, kwargs, tcfg, manifest, val_data):
    """No training: the weights file becomes the one checkpoint (epoch 0) that the analysis reads."""
    n_params = sum(p.numel() for p in model.parameters())
    with atomic_dir(CHECKPOINTS) as tmp:
        save_weights(model, tmp / checkpoint_name(0))
        write_config(tmp, kwargs, [0], manifest["classes"], config_hash(kwargs, tcfg["weights"]))
    metrics = {"weights": str(tcfg["weights"]), "epochs": 0, "params_M": round(n_params / 1e6, 3)}
    with Live(LIVE, save_dvc_exp=False, dvcyaml=False) as live:
        # Accuracy only when the head has one output per prepared class (assumed in their order).
        if kwargs["num_classes"] == len(manifest["classes"]):
            res = evaluate(model, *val_data, tcfg["eval_batch_size"])
            metrics.update(val_top1=res["top1"], val_top5=res["top5"], val_loss=res["loss"])
            for name in ("loss", "top1", "top5"):
                live.log_metric(f"val/{name}", res[name])
    write_json(METRICS, metrics)
    print(f"no training: {tcfg['weights']} ({kwargs['model_name']}, {n_params / 1e6:.2f} M params, "
          f"{kwargs['num_classes']} outputs) is the checkpoint at epoch 0 -> {CHECKPOINTS}")


if __name__ == "__main__":
    run_stage("train", main)
