"""train: a timm ViT on the prepared data; checkpoints to data/checkpoints/, logs via DVCLive."""
from pathlib import Path

import torch
from dvclive import Live

from tgo.data import load_prepared
from tgo.io import load_params, run_stage, write_json
from tgo.models import build_model, model_kwargs
from tgo.training import checkpoint_schedule, config_hash, finish, train

DATA, CKPT, LIVE, METRICS = "data/prepared", Path("data/checkpoints"), "reports/train", "reports/metrics/train.json"


def main():
    params = load_params()
    mcfg, tcfg = params["model"], params["train"]
    train_images, train_labels, manifest = load_prepared(DATA, "train")
    val_images, val_labels, _ = load_prepared(DATA, "val")
    kwargs = model_kwargs(mcfg, len(manifest["classes"]), manifest["image_size"])
    checkpoint_schedule(tcfg["checkpoint_epochs"], tcfg["epochs"])
    torch.manual_seed(tcfg["seed"])
    model = build_model(kwargs)
    run_hash = config_hash(kwargs, tcfg, manifest["splits"])
    CKPT.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"training {mcfg['name']} ({n_params / 1e6:.2f} M params) for {tcfg['epochs']} epochs "
          f"on {len(train_labels)} images")

    with Live(LIVE, save_dvc_exp=False, dvcyaml=False) as live:
        def log_epoch(row):
            live.step = row["epoch"]
            live.log_metric("train/loss", row["train_loss"])
            live.log_metric("val/loss", row["val_loss"])
            live.log_metric("val/top1", row["val_top1"])
            live.log_metric("val/top5", row["val_top5"])
            live.log_metric("lr", row["lr"])
            live.next_step()

        history, schedule = train(model, (train_images, train_labels), (val_images, val_labels),
                                  tcfg, CKPT, run_hash, log_epoch)
    finish(CKPT, kwargs, schedule, manifest["classes"], run_hash)
    last = history[-1]
    write_json(METRICS, {"val_top1": last["val_top1"], "val_top5": last["val_top5"],
                         "val_loss": last["val_loss"], "train_loss": last["train_loss"],
                         "epochs": tcfg["epochs"], "params_M": round(n_params / 1e6, 3)})
    print(f"final val top-1 {last['val_top1']:.2f}%; checkpoints at epochs {schedule} -> {CKPT}")


if __name__ == "__main__":
    run_stage("train", main)
