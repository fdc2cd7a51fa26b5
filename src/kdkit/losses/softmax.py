"""(Log-)softmax over the classes of (N, C) logits, around a slow CPU kernel for few classes.

PyTorch's CPU kernel for a softmax over the last dimension vectorises along that dimension; when it is shorter
than one vector register (C < 16 float32 lanes with AVX-512, C < 8 with AVX2) it runs a scalar loop. On this
project's machine (AVX-512), forward and backward of a (256, 10) log_softmax took 103 us, and 67 us for the same
numbers computed along dim 0 of the transposed view, whose kernel vectorises across rows (``python
bench/step_parts.py`` prints both). The values are the same up to float rounding and autograd differentiates
either. Fewer rows and other devices take the plain call, which was as fast or faster there on this machine.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor

MANY_ROWS = 64  # below this the plain kernel was as fast (32 rows: equal; 8 rows: plain 2x faster)


@cache
def _vector_lanes() -> int:
    """float32 lanes of the CPU kernels torch dispatches to here."""
    return 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8


def _by_columns(x: Tensor) -> bool:
    return x.dim() == 2 and x.device.type == "cpu" and x.shape[0] >= MANY_ROWS and x.shape[1] < _vector_lanes()


def log_softmax(x: Tensor) -> Tensor:
    """log softmax over dim 1 of (N, C) logits (any other shape: over the last dim, the plain call)."""
    return torch.log_softmax(x.t(), 0).t() if _by_columns(x) else torch.log_softmax(x, -1)


def softmax(x: Tensor) -> Tensor:
    """softmax over dim 1 of (N, C) logits (any other shape: over the last dim, the plain call)."""
    return torch.softmax(x.t(), 0).t() if _by_columns(x) else torch.softmax(x, -1)
