"""Flow of solution procedure (Yim, Joo, Bae & Kim 2017, "A Gift from Knowledge Distillation: Fast
Optimization, Network Minimization and Transfer Learning").

The FSP matrix of two layers F1 (C1, H, W) and F2 (C2, H, W) of one network describes the flow between them:

    G[a, b] = 1/(H W) * sum_{h, w} F1[a, h, w] * F2[b, h, w]                 (C1, C2)
    L       = 1/N * sum_i || G_s(x_i) - G_t(x_i) ||_F^2

The term reads two tapped tensors per model: ``{name: fsp, student: [layer1, layer2], teacher: [layer1, layer2]}``.
If F1 is larger than F2 spatially it is average-pooled to F2's size (the paper pairs layers of equal size). When
student and teacher channel counts differ, the term gets one adapter per layer (a 1x1 convolution), as in the
paper's use of matching channel numbers.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.errors import ModelError
from kdkit.losses.registry import LossOptions

_POOLS = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def fsp_matrix(first: Tensor, second: Tensor) -> Tensor:
    """(N, C1, *S1), (N, C2, *S2) -> (N, C1, C2), pooling the larger map to the other's spatial size."""
    if first.shape[2:] != second.shape[2:]:
        if first.shape[2:].numel() < second.shape[2:].numel():
            second = _POOLS[second.dim() - 2](second, first.shape[2:])
        else:
            first = _POOLS[first.dim() - 2](first, second.shape[2:])
    a, b = first.flatten(2), second.flatten(2)
    return a @ b.transpose(1, 2) / a.shape[2]


def _pair(value: object, who: str) -> tuple[Tensor, Tensor]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ModelError(
            f"fsp reads two layers per model; give the {who} as a list of two module paths, "
            f"e.g. {who}: [layer1, layer2]"
        )
    if value[0].dim() < 3 or value[1].dim() < 3:
        shapes = [tuple(v.shape) for v in value]
        raise ModelError(f"fsp needs feature maps (N, C, *spatial) for the {who}, got shapes {shapes}")
    return value[0], value[1]


class FSP(nn.Module):
    """Squared Frobenius distance between student and teacher FSP matrices, summed per sample, batch mean."""

    needs_adapter = True  # channel counts of each layer must match the teacher's

    def forward(self, student: tuple[Tensor, Tensor], teacher: tuple[Tensor, Tensor], target: Tensor | None = None):
        gs, gt = fsp_matrix(*_pair(student, "student")), fsp_matrix(*_pair(teacher, "teacher"))
        if gs.shape != gt.shape:
            raise ModelError(
                f"fsp matrices differ in shape: student {tuple(gs.shape[1:])}, teacher {tuple(gt.shape[1:])}; "
                "attach adapters first (scheme.attach_adapters(example_x))"
            )
        return (gs - gt).pow(2).flatten(1).sum(dim=1).mean()


class FSPOptions(LossOptions):
    """`{name: fsp, ...}` in distill.losses: the keys of :class:`FSP`."""

    name: Literal["fsp"] = "fsp"
    loss = FSP
