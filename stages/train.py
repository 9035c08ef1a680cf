"""train: a timm ViT on the prepared data; checkpoints to data/checkpoints/ (by way of
data/train-work/, from which a killed run resumes), logs via DVCLive. With model.weights set it
trains nothing: the weights become the one checkpoint (epoch 0), and the same architecture at random
initialisation (seed train.seed) the untrained network every claim is compared with (init/).
With train.nproc_per_node x train.nnodes > 1 it relaunches itself under torchrun (DDP)."""
import os
from contextlib import nullcontext

import torch
from dvclive import Live

from tgo import distributed
from tgo.checkpoints import import_weights, publish
from tgo.data import load_prepared
from tgo.io import TGOError, atomic_dir, run_stage, single_writer, write_json
from tgo.models import ARCH_KEYS, check_name, create_model, model_kwargs
from tgo.params import load
from tgo.runs import PREPARED, Run
from tgo.evaluation import evaluate, head_classes, no_accuracy
from tgo.training import train, weights_hash

RUN = Run()


def main():
    params = load("model", "train")
    mcfg, tcfg = params["model"], params["train"]
    val_images, val_labels, manifest = load_prepared(PREPARED, "val")
    if mcfg["weights"]:
        model = create_model(mcfg["name"], mcfg["weights"], **{k: mcfg[k] for k in ARCH_KEYS})
        return use_weights(model, mcfg["weights"], tcfg, manifest, (val_images, val_labels))
    train_images, train_labels, _ = load_prepared(PREPARED, "train")
    check_name(mcfg["name"])
    kwargs = model_kwargs(mcfg, len(manifest["classes"]), manifest["image_size"])
    if tcfg["batch_size"] > len(train_labels):
        raise TGOError(f"train.batch_size={tcfg['batch_size']} exceeds the train split ({len(train_labels)} "
                       "images); lower it")
    # One trainer at a time (torchrun's workers run under their launcher's lock).
    with single_writer(RUN.train_lock, RUN.train_work) if "LOCAL_RANK" not in os.environ else nullcontext():
        return run(mcfg, tcfg, kwargs, manifest, (train_images, train_labels), (val_images, val_labels))


def run(mcfg, tcfg, kwargs, manifest, train_data, val_data):
    n_procs = tcfg["nproc_per_node"] * tcfg["nnodes"]
    if n_procs > 1 and "LOCAL_RANK" not in os.environ:  # DVC started us: launch the workers as we were started
        entry = ["-m", __spec__.name] if __spec__ else [__file__]
        return distributed.torchrun(entry, tcfg["nproc_per_node"], tcfg["nnodes"], tcfg["rdzv_endpoint"])
    rank = distributed.init() if n_procs > 1 else 0
    torch.manual_seed(tcfg["seed"])
    model = create_model(**kwargs).to(distributed.pick_device())
    this_run = weights_hash(kwargs, tcfg, manifest["splits"])
    RUN.train_work.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    if rank > 0:  # a worker of a distributed run: rank 0 logs and writes
        train(model, train_data, val_data, tcfg, RUN.train_work, this_run, lambda row: None)
        return
    print(f"training {mcfg['name']} ({n_params / 1e6:.2f} M params) for {tcfg['epochs']} epochs "
          f"on {len(train_data[1])} images" + (f", {n_procs} processes" if n_procs > 1 else ""))

    # DVCLive logs into a temporary directory that replaces reports/train when training finishes: a
    # run that fails or is stopped leaves the last run's curves (a resumed run replays its epochs).
    with atomic_dir(RUN.plots("train")) as live_dir, Live(str(live_dir), save_dvc_exp=False, dvcyaml=False) as live:
        def log_epoch(row):
            live.step = row["epoch"]
            live.log_metric("train/loss", row["train_loss"])
            live.log_metric("val/loss", row["val_loss"])
            live.log_metric("val/top1", row["val_top1"])
            live.log_metric("val/top5", row["val_top5"])
            live.log_metric("lr", row["lr"])
            live.next_step()

        history, schedule = train(model, train_data, val_data, tcfg, RUN.train_work, this_run, log_epoch)
    publish(RUN.train_work, RUN.checkpoints, kwargs, schedule, manifest["classes"], this_run)
    last = history[-1]
    write_json(RUN.metrics("train"), {"val_top1": last["val_top1"], "val_top5": last["val_top5"],
                         "val_loss": last["val_loss"], "train_loss": last["train_loss"],
                         "epochs": tcfg["epochs"], "params_M": round(n_params / 1e6, 3)})
    print(f"final val top-1 {last['val_top1']:.2f}%; checkpoints at epochs {schedule} -> {RUN.checkpoints}")


def use_weights(model, weights, tcfg, manifest, val_data):
    """No training: the weights become the one checkpoint (epoch 0) that the analysis reads, beside
    their untrained network (the same architecture at random initialisation, seed train.seed)."""
    torch.manual_seed(tcfg["seed"])
    untrained = create_model(**model.create_kwargs)
    n_params = import_weights(model, weights, RUN.checkpoints, manifest["classes"], (untrained, tcfg["seed"]))
    metrics = {"weights": str(weights), "epochs": 0, "params_M": round(n_params / 1e6, 3)}
    classes = head_classes(model, manifest["classes"])
    with atomic_dir(RUN.plots("train")) as live_dir, Live(str(live_dir), save_dvc_exp=False, dvcyaml=False) as live:
        if classes is not None:  # accuracy only when the head's classes are the data's
            res = evaluate(model, *val_data, tcfg["eval_batch_size"], classes=classes)
            metrics.update(val_top1=res["top1"], val_top5=res["top5"], val_loss=res["loss"])
            for name in ("loss", "top1", "top5"):
                live.log_metric(f"val/{name}", res[name])
    write_json(RUN.metrics("train"), metrics)
    print(f"no training: {weights} ({model.create_kwargs['name']}, {n_params / 1e6:.2f} M params, "
          f"{model.num_classes} outputs) is the checkpoint at epoch 0, its architecture at random initialisation "
          f"(seed {tcfg['seed']}) the untrained network -> {RUN.checkpoints}"
          + ("" if classes is not None else f"; no accuracy: {no_accuracy(model)}"))


if __name__ == "__main__":
    run_stage("train", main, scratch=lambda: RUN.train_work)
