"""zoo_model --zoo <id>: zoo model <id> (params group zoo) built offline from its weights (or timm's
random initialisation, seed 0) -> its one checkpoint (epoch 0) in data/zoo/<id>/checkpoints (with
weights, the same architecture at random initialisation, seed 0, beside it in init/: the untrained
network every claim is compared with), and its accuracy on the val split when the head's classes are
the data's -> reports/zoo/<id>/metrics/model.json."""
import torch

from tgo.checkpoints import import_weights
from tgo.data import load_prepared
from tgo.io import TGOError, run_stage, write_json
from tgo.models import ARCH_KEYS, create_model
from tgo.params import load
from tgo.runs import PREPARED, from_argv
from tgo.evaluation import evaluate, head_classes, no_accuracy



def main():
    run = from_argv()
    try:
        build(run)
    except BaseException:
        # `dvc exp run` creates data/zoo/<id>/ before a new model's first run (it checks out the
        # folders of the outputs): a run that fails leaves no empty folder behind.
        for folder in (run.data, run.data.parent):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def build(run):
    zoo = load("zoo")
    if run.zoo_id not in zoo:
        raise TGOError(f"zoo.{run.zoo_id}: not in the zoo ({', '.join(zoo) or 'empty'}); run the zoo_* stages "
                       "through dvc repro")
    entry = zoo[run.zoo_id]
    batch_size = load("extract")["batch_size"]
    images, labels, manifest = load_prepared(PREPARED, "val")
    torch.manual_seed(0)  # the random initialisation of an entry without weights
    model = create_model(entry["name"], entry["weights"], param=f"zoo.{run.zoo_id}",
                         **{k: entry.get(k) for k in ARCH_KEYS})
    untrained = None
    if entry["weights"]:
        torch.manual_seed(0)
        untrained = create_model(**model.create_kwargs), 0
    n_params = import_weights(model, entry["weights"] or "random initialisation (seed 0)", run.checkpoints,
                              manifest["classes"], untrained)
    # weights null: the model is itself a random initialisation, its own untrained network (tgo.claims).
    metrics = {"weights": entry["weights"], "params_M": round(n_params / 1e6, 3), "num_classes": model.num_classes}
    classes = head_classes(model, manifest["classes"])
    if classes is not None:
        res = evaluate(model, images, labels, batch_size, classes=classes)
        metrics.update(val_top1=res["top1"], val_top5=res["top5"], val_loss=res["loss"], n_val=len(labels))
    write_json(run.metrics("model"), metrics)
    accuracy = f"val top-1 {metrics['val_top1']:.2f}%" if classes is not None else f"no accuracy: {no_accuracy(model)}"
    print(f"zoo model {run.zoo_id}: {entry['name']} from {entry['weights'] or 'random initialisation (seed 0)'} "
          f"({n_params / 1e6:.2f} M params, {model.num_classes} outputs), {accuracy} -> {run.checkpoints}, "
          f"{run.metrics('model')}")


if __name__ == "__main__":
    run_stage("zoo_model", main)
