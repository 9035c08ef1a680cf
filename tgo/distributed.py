"""Several processes (torchrun, DistributedDataParallel): who am I, which device, how to launch.

Every rank draws the same shuffling and augmentation for the whole global batch and trains on its
share of the rows (tgo.training); rank 0 alone evaluates, logs and writes checkpoints.
"""
import os
import subprocess
import sys

import torch
import torch.distributed as dist

from tgo.io import TGOError


def world():
    """(rank, number of processes): (0, 1) unless this process was started by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def pick_device():
    """This process's GPU (torchrun's LOCAL_RANK) if there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def device_name(device):
    """The device in words: the GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"the CPU ({torch.get_num_threads()} threads)"


def torchrun(entry, nproc_per_node, nnodes=1, rdzv_endpoint=None):
    """Run `entry` (a script's arguments: ["-m", "stages.train"] or [path]) under torchrun on this
    machine (the other nodes start the same command)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"]
    if nnodes > 1:
        cmd += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}"]
    else:
        cmd += ["--standalone"]
    print("launching:", " ".join(cmd[1:] + entry), flush=True)
    if subprocess.run(cmd + entry).returncode:
        raise TGOError("train: a distributed worker failed; its error is printed above")


def init():
    """Join the process group (NCCL on GPUs, gloo on the CPU); returns this process's rank."""
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank()
