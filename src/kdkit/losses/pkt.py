"""Probabilistic knowledge transfer (Passalis & Tefas 2018, "Learning Deep Representations with Probabilistic
Knowledge Transfer"), with the cosine-similarity kernel the paper recommends.

    K(a, b)   = ( a.b / (||a|| ||b||) + 1 ) / 2                                 in [0, 1]
    p_{j|i}   = K(x_i, x_j) / sum_{k != i} K(x_i, x_k)                          for j != i
    L         = 1/N * sum_i sum_{j != i} p^t_{j|i} * log( p^t_{j|i} / p^s_{j|i} )

i.e. the KL divergence between the teacher's and the student's conditional distributions over the other
samples of the batch, averaged over samples. Only similarities are compared, so widths may differ (no adapter).
eps keeps the logarithm finite when a kernel value is 0 (two opposite vectors).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.losses.registry import LossOptions


def conditional_probabilities(x: Tensor, eps: float) -> Tensor:
    """(N, D) -> (N, N - 1) with row i = p_{j|i} over the other samples j != i, in order."""
    z = F.normalize(x.flatten(1), dim=1)
    n = len(z)
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    kernel = ((z @ z.t() + 1.0) / 2.0)[off].view(n, n - 1)
    return kernel / kernel.sum(dim=1, keepdim=True).clamp_min(eps)


class PKT(nn.Module):
    """KL divergence between teacher and student sample-to-sample probability distributions."""

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        if len(student) < 2:
            return student.sum() * 0.0
        ps = conditional_probabilities(student, self.eps)
        pt = conditional_probabilities(teacher, self.eps)
        return (pt * torch.log((pt + self.eps) / (ps + self.eps))).sum(dim=1).mean()


class PKTOptions(LossOptions):
    """`{name: pkt, ...}` in distill.losses: the keys of :class:`PKT`."""

    name: Literal["pkt"] = "pkt"
    eps: float = 1e-7
    loss = PKT
