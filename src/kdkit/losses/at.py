"""Attention transfer (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention: Improving the
Performance of Convolutional Neural Networks via Attention Transfer"), activation-based.

    Q(A) = vec( 1/C * sum_c |A_c|^p )                   spatial attention map of a (C, H, W) activation
    L    = 1/(N * HW) * sum_i || Q(s_i)/||Q(s_i)||_2 - Q(t_i)/||Q(t_i)||_2 ||_2^2

p = 2 as in the paper. Normalising each map makes the loss independent of the number of channels, so student
and teacher may have different widths and no adapter is needed. The mean over positions follows the authors'
code, where the usual weight is beta = 1000. Maps of different spatial size are resized to the teacher's size
(bilinear/linear interpolation) before normalising. Works for any map (N, C, *spatial) with at least one
spatial dimension: 1-D sequences, images, volumes.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.errors import ModelError
from kdkit.losses.registry import LossOptions

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def attention_map(feature: Tensor, p: float = 2.0) -> Tensor:
    """(N, C, *spatial) -> (N, *spatial): the channel mean of |A|^p."""
    return feature.abs().pow(p).mean(dim=1)


class AttentionTransfer(nn.Module):
    """Squared distance between L2-normalised spatial attention maps of student and teacher."""

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"p must be > 0, got {p}")
        self.p = p

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        if student.dim() < 3 or teacher.dim() < 3 or student.dim() != teacher.dim():
            raise ModelError(
                f"at needs feature maps (N, C, *spatial) of the same rank, got student {tuple(student.shape)} and "
                f"teacher {tuple(teacher.shape)}; tap convolutional layers (student: <path>, teacher: <path>)"
            )
        qs, qt = attention_map(student, self.p), attention_map(teacher, self.p)
        if qs.shape[1:] != qt.shape[1:]:
            qs = F.interpolate(qs.unsqueeze(1), size=qt.shape[1:], mode=_MODES[qt.dim() - 1]).squeeze(1)
        qs, qt = F.normalize(qs.flatten(1), dim=1), F.normalize(qt.flatten(1), dim=1)
        return (qs - qt).pow(2).mean()


class AttentionTransferOptions(LossOptions):
    """`{name: at, ...}` in distill.losses: the keys of :class:`AttentionTransfer`."""

    name: Literal["at"] = "at"
    p: float = 2.0
    loss = AttentionTransfer
