"""Multi-process training on PyTorch's own engine: a process group set up from the environment `torchrun`
writes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR...), so the same code runs alone or as one of N processes.

Gradients are synchronised by DistributedDataParallel in the trainer; this module only answers "am I one of
several processes, which one, and on which device", so the rest of kdkit never reads the environment itself.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env() -> bool:
    """Join the process group when launched with more than one process; returns whether training is distributed.

    Safe to call many times (the group is created once) and a no-op in a plain single process, so entry points
    can call it unconditionally. nccl where CUDA is available, gloo on CPU; each process takes cuda:LOCAL_RANK.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return True


def is_distributed() -> bool:
    """True once a process group with more than one process exists."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 owns the side effects (run directory, checkpoints, logs, printed tables); others only compute."""
    return rank() == 0


def barrier() -> None:
    """Wait for all processes (a no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def local_device() -> torch.device:
    """The device of this process: cuda:LOCAL_RANK on a GPU machine, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def shutdown(wait: bool = True) -> None:
    """Leave and destroy the process group, if any, at the end of a program.

    With `wait` the processes first meet at a barrier: one that tears its group down while another is still
    finishing can make gloo abort the process at exit. Pass wait=False after an error, when the others may never
    arrive.
    """
    if dist.is_available() and dist.is_initialized():
        if wait and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
