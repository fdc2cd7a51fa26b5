"""Multi-process training on PyTorch's own engine: a process group set up from the environment `torchrun`
writes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR...), so the same code runs alone or as one of N processes.

Gradients are synchronised by DistributedDataParallel in the trainer; this module only answers "am I one of
several processes, which one, and on which device", so the rest of kdkit never reads the environment itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

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
        backend, timeout = "nccl" if torch.cuda.is_available() else "gloo", collective_timeout()
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if attempt is None:
            dist.init_process_group(backend=backend, timeout=timeout)
        else:  # under torchrun: keys of this attempt apart from the failed attempts', see _attempt_store
            dist.init_process_group(backend=backend, timeout=timeout, **_attempt_store(attempt, timeout))
    return True


def _attempt_store(attempt: str, timeout: timedelta) -> dict:
    """The env:// store with this attempt's own key prefix. torchrun shares its rendezvous store with the workers,
    and after a restart (``--max-restarts``) the new workers found the dead ones' addresses in it: gloo connected
    to a port nobody listens on any more and the restarted job failed (pytorch/pytorch#135712, seen in
    tests/run/test_distributed_resume.py). Every worker of a restarted group has the same restart count."""
    store, rank, size = next(dist.rendezvous("env://", timeout=timeout))
    return {"store": dist.PrefixStore(f"kdkit/attempt_{attempt}", store), "rank": rank, "world_size": size}


def collective_timeout() -> timedelta:
    """How long a process waits in a collective for the others before it fails: ``KDKIT_DIST_TIMEOUT`` seconds,
    default 1800. A rank that dies is not what this is for: torchrun sees the dead worker within seconds and stops
    the rest (tested: the job ends within 60 s). It bounds a rank that hangs alive, and must outlast the longest
    legitimate wait: the other ranks wait while rank 0 alone evaluates the models and writes the run directory."""
    from kdkit.errors import ConfigError

    raw = os.environ.get("KDKIT_DIST_TIMEOUT", "1800")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"KDKIT_DIST_TIMEOUT={raw!r} is not a positive number of seconds; unset it or give e.g. 1800")
    return timedelta(seconds=seconds)


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


@contextmanager
def process_group() -> Iterator[None]:
    """Join the process group when launched by torchrun (a no-op otherwise) and always leave it at the end, so
    every process exits cleanly; after an error it leaves without waiting for processes that may never arrive."""
    init_from_env()
    try:
        yield
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown()
