"""Adapters: small trainable connectors that map a student feature to the shape of the teacher feature it is
compared with (FitNets' regressor). They live inside the LossTerm, so they are optimised with the student and
saved with the scheme's extras (``checkpoints/<name>.extras.safetensors``), never with the exported student.

Shapes are found by probing: one forward of each model on a few example inputs, in eval mode and without
gradients, so BatchNorm statistics and dropout state are left exactly as they were.

    per-sample shapes                         adapter
    (C, *S)   -> (C', *S')   same rank        resize S -> S' (adaptive average pooling when shrinking,
                                              linear interpolation otherwise), then a 1x1 convolution C -> C'
    (D,)      -> (D',)                        linear D -> D'
    any other pair (e.g. (D,) -> (C', L'))    flatten, linear, reshape to the teacher's shape
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from kdkit.errors import ModelError
from kdkit.taps import LOGITS, Taps
from kdkit.terms import LossTerm, key_paths, pick_outputs

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_POOLS = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


class Resize(nn.Module):
    """Resize the spatial dimensions of (N, C, *S) maps to a fixed size; no parameters."""

    def __init__(self, size: Sequence[int]) -> None:
        super().__init__()
        self.size = tuple(int(v) for v in size)

    def forward(self, x: Tensor) -> Tensor:
        if all(have >= want for have, want in zip(x.shape[2:], self.size, strict=True)):
            return _POOLS[len(self.size)](x, self.size)
        return F.interpolate(x, size=self.size, mode=_MODES[len(self.size)], align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class TupleAdapter(nn.Module):
    """One adapter per element of a tuple of features (e.g. FSP's two layers); Identity where shapes match."""

    def __init__(self, adapters: Iterable[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(adapters)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, ...]:
        return tuple(adapter(x) for adapter, x in zip(self.parts, features, strict=True))


def make_adapter(student_shape: Sequence[int], teacher_shape: Sequence[int]) -> nn.Module:
    """A module mapping features of per-sample shape `student_shape` to `teacher_shape` (batch dim excluded)."""
    s, t = tuple(student_shape), tuple(teacher_shape)
    if s == t:
        return nn.Identity()
    if len(s) == len(t) and len(s) - 1 in _CONVS:  # feature maps (C, *S) of equal rank
        layers: list[nn.Module] = []
        if s[1:] != t[1:]:
            layers.append(Resize(t[1:]))
        if s[0] != t[0]:
            layers.append(_CONVS[len(s) - 1](s[0], t[0], kernel_size=1))
        return nn.Sequential(*layers)
    layers = [nn.Flatten()] if len(s) > 1 else []
    layers.append(nn.Linear(math.prod(s), math.prod(t)))
    if len(t) > 1:
        layers.append(nn.Unflatten(1, t))
    return nn.Sequential(*layers)


def adapter_between(student: Tensor | Sequence[Tensor], teacher: Tensor | Sequence[Tensor]) -> nn.Module | None:
    """The adapter for one term's tapped tensors (batched), or None when the shapes already match."""
    if isinstance(student, Tensor):
        return None if student.shape[1:] == teacher.shape[1:] else make_adapter(student.shape[1:], teacher.shape[1:])
    if len(student) != len(teacher):
        raise ModelError(f"a term reads {len(student)} student tensors but {len(teacher)} teacher tensors; "
                         "list as many student paths as teacher paths")
    pairs = list(zip(student, teacher, strict=True))
    if all(s.shape[1:] == t.shape[1:] for s, t in pairs):
        return None
    return TupleAdapter(make_adapter(s.shape[1:], t.shape[1:]) for s, t in pairs)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


@torch.no_grad()
def probe(model: nn.Module, paths: Iterable[str], example: Tensor) -> dict[str, Tensor]:
    """Logits and tapped tensors of one eval-mode, no-grad forward; every module's train/eval mode is restored."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with Taps(model, paths) as taps:
            return taps(example.to(_device(model)))
    finally:
        for module, mode in modes.items():
            module.train(mode)


def attach_adapters(student: nn.Module, teacher: nn.Module, terms: Sequence[LossTerm], example: Tensor) -> list[str]:
    """Give every term whose loss declares ``needs_adapter`` and whose student/teacher shapes differ an adapter.

    Call before training: the optimiser only sees adapters that exist when it is created. Terms that already
    have an adapter are left alone. Returns the names of the terms that got one.
    """
    needing = [t for t in terms if getattr(t.loss, "needs_adapter", False) and t.adapter is None]
    if not needing:
        return []
    s_out = probe(student, {p for t in needing for p in key_paths(t.student_key)} - {LOGITS}, example)
    t_out = probe(teacher, {p for t in needing for p in key_paths(t.teacher_key)} - {LOGITS}, example)
    attached = []
    for term in needing:
        make = getattr(term.loss, "adapter_for", adapter_between)  # a loss may build its own (e.g. hidden_mse's W_h)
        adapter = make(pick_outputs(s_out, term.student_key), pick_outputs(t_out, term.teacher_key))
        if adapter is not None:
            term.adapter = adapter.to(_device(student))
            attached.append(term.name)
    return attached


def example_inputs(dataset: Dataset, size: int = 2) -> Tensor:
    """The inputs of the first `size` samples of a dataset of (x, y) tuples or {"x": ...} dicts, as one batch."""
    batch = default_collate([dataset[i] for i in range(min(size, len(dataset)))])  # type: ignore[arg-type]
    if isinstance(batch, dict):
        return batch["x"]
    return batch if isinstance(batch, Tensor) else batch[0]
