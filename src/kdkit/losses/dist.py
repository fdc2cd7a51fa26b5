"""DIST (Huang, You, Wang, Qian & Xu 2022, "Knowledge Distillation from A Stronger Teacher").

Instead of matching probabilities exactly (KL), DIST asks for a linear relation, measured by the Pearson
correlation rho, between student and teacher predictions, row-wise (between classes) and column-wise (between
samples of one class):

    Y = softmax(Z / tau)                                             (N, C) for student and teacher
    L_inter = 1/N * sum_i ( 1 - rho(Y^s[i, :], Y^t[i, :]) )
    L_intra = 1/C * sum_c ( 1 - rho(Y^s[:, c], Y^t[:, c]) )
    L       = tau^2 * ( beta * L_inter + gamma * L_intra )

Defaults beta = gamma = 1, tau = 1 are the paper's ImageNet settings (config name of tau: ``T``, as for kd); the
tau^2 factor follows the authors' code.
Use it together with a ``ce`` term.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from kdkit.losses.registry import LossOptions
from kdkit.losses.softmax import softmax


def pearson_rows(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation of each row of `a` with the same row of `b`."""
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


class DIST(nn.Module):
    """tau^2 * (beta * inter-class + gamma * intra-class) Pearson-correlation distances of softened predictions."""

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, T: float = 1.0) -> None:
        super().__init__()
        if T <= 0:
            raise ValueError(f"temperature T must be > 0, got {T}")
        self.beta, self.gamma, self.T = beta, gamma, T

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        ys, yt = softmax(student / self.T), softmax(teacher / self.T)
        inter = 1.0 - pearson_rows(ys, yt).mean()
        intra = 1.0 - pearson_rows(ys.t(), yt.t()).mean()
        return self.T**2 * (self.beta * inter + self.gamma * intra)


class DISTOptions(LossOptions):
    """`{name: dist, ...}` in distill.losses: the keys of :class:`DIST`."""

    name: Literal["dist"] = "dist"
    beta: float = 1.0
    gamma: float = 1.0
    T: float = 1.0
    loss = DIST
