"""Evaluating a classifier on a split: loss, top-1 and top-5, over the data's classes when the
head's classes are the data's (a model trained here, or a timm ImageNet head and ImageNet classes).
Used by training, by model.weights and by the zoo, without the training machinery."""
import numpy as np
import torch
import torch.nn.functional as F
from timm.data import ImageNetInfo, infer_imagenet_subset
from timm.utils import accuracy

from tgo.loader import device_batches
from tgo.models import input_config, preprocess


def device_of(model):
    return next(model.parameters()).device


def head_classes(model, classes):
    """Indices into the head's outputs of the data's classes when the head's classes are the
    data's: one output per class (taken to be in the data's order), or a timm ImageNet head whose
    label set holds every class of the data (wnids: ImageNet-100 in a 1000-class head). None
    otherwise (no head, other classes, unlabelled data): no accuracy can be claimed."""
    if not classes or not model.num_classes:
        return None
    if model.num_classes == len(classes):
        return list(range(len(classes)))
    subset = infer_imagenet_subset(model)
    names = ImageNetInfo(subset).label_names() if subset else []
    index = {name: i for i, name in enumerate(names)}
    return [index[c] for c in classes] if all(c in index for c in classes) else None


def no_accuracy(model):
    """Why `head_classes` gave none, in words."""
    return "the model has no classifier head" if not model.num_classes else "the head's classes are not the data's"


@torch.no_grad()
def evaluate(model, images, labels, batch_size, amp=None, classes=None):
    """Mean cross-entropy, top-1 and top-5 accuracy (percent) over a whole split, each image
    preprocessed as the model expects (tgo.models.input_config: centre crops for a model trained
    here). `classes`: the head outputs of the data's classes (`head_classes`), all if None."""
    model.eval()
    losses, top1, top5, n = [], 0, 0, len(labels)
    k = min(5, len(classes) if classes is not None else model.num_classes)
    device, preprocessing = device_of(model), input_config(model)
    index = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    for xb, y in device_batches(images, labels, index, device):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            logits = model(preprocess(xb, preprocessing)).float()
        if classes is not None:
            logits = logits[:, classes]
        # Per image and summed once, and counts rather than per-batch percentages: the results do
        # not depend on how the split is batched (eval_batch_size is a speed knob).
        losses.append(F.cross_entropy(logits.double(), y, reduction="none").cpu())
        a1, a5 = accuracy(logits, y, topk=(1, k))
        top1 += round(a1.item() * len(y) / 100)
        top5 += round(a5.item() * len(y) / 100)
    return {"loss": torch.cat(losses).sum().item() / n, "top1": 100 * top1 / n, "top5": 100 * top5 / n}
