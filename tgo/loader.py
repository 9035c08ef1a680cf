"""Feeding batches of prepared images to the training device."""
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


def device_batches(images, labels, index_batches, device):
    """Yield (uint8 N×H×W×3, labels) on `device` for each array of row indices.

    A background thread gathers the rows from the memory map (torch.index_select, which releases
    the GIL) into pinned memory and starts the copy to the GPU while the previous batch trains.
    """
    with warnings.catch_warnings():  # a read-only memory map; only ever read here
        warnings.simplefilter("ignore", UserWarning)
        images_t = torch.from_numpy(images)
    pin = device.type == "cuda"

    def load(idx):
        idx = torch.from_numpy(np.asarray(idx))
        x = torch.empty((len(idx), *images_t.shape[1:]), dtype=torch.uint8, pin_memory=pin)
        torch.index_select(images_t, 0, idx, out=x)
        y = torch.from_numpy(labels[idx.numpy()])
        return x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)

    with ThreadPoolExecutor(1) as pool:
        ahead = deque(pool.submit(load, idx) for idx in index_batches[:2])
        for idx in index_batches[2:]:
            ahead.append(pool.submit(load, idx))
            yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
