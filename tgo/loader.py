"""Feeding batches of prepared images to the training device."""
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


def device_batches(images, labels, index_batches, device):
    """Yield (uint8 N×H×W×3, labels) on `device` for each array of row indices (labels None: None).

    A background thread gathers the rows from the memory map (torch.index_select, which releases
    the GIL) into pinned memory and copies them to the GPU on a stream of its own, so the copy of
    the next batch overlaps the compute on this one; the consumer's stream waits for the copy's
    event before it uses the batch.
    """
    with warnings.catch_warnings():  # a read-only memory map; only ever read here
        warnings.simplefilter("ignore", UserWarning)
        images_t = torch.from_numpy(images)
    cuda = device.type == "cuda"
    copy_stream = torch.cuda.Stream(device) if cuda else None

    def load(idx):
        idx = torch.from_numpy(np.asarray(idx))
        x = torch.empty((len(idx), *images_t.shape[1:]), dtype=torch.uint8, pin_memory=cuda)
        torch.index_select(images_t, 0, idx, out=x)
        y = None if labels is None else torch.from_numpy(labels[idx.numpy()])
        if not cuda:
            return x, y, None
        with torch.cuda.stream(copy_stream):
            x = x.to(device, non_blocking=True)
            y = None if y is None else y.to(device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(copy_stream)
        return x, y, copied

    def ready(batch):
        x, y, copied = batch
        if copied is not None:
            compute = torch.cuda.current_stream(device)
            compute.wait_event(copied)
            # The tensors were allocated on the copy stream: keep the allocator from reusing their
            # memory before the compute stream is done with them.
            for t in (x, y):
                if t is not None:
                    t.record_stream(compute)
        return x, y

    with ThreadPoolExecutor(1) as pool:
        ahead = deque(pool.submit(load, idx) for idx in index_batches[:2])
        for idx in index_batches[2:]:
            ahead.append(pool.submit(load, idx))
            yield ready(ahead.popleft().result())
        while ahead:
            yield ready(ahead.popleft().result())
