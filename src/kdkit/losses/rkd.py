"""Relational knowledge distillation (Park, Kim, Lu & Cho 2019, "Relational Knowledge Distillation").

The student mimics the teacher's *structure* of a batch, not its features, so the two embeddings may have any
widths (no adapter). Features are flattened to one vector per sample; l_delta is the Huber loss (delta = 1).

Distance-wise:
    psi_D(a, b) = ||a - b||_2 / mu,   mu = mean of ||a - b||_2 over all pairs of distinct samples in the batch
    L_D = 1/(N(N-1)) * sum_{i != j} l_delta( psi_D(s_i, s_j), psi_D(t_i, t_j) )

Angle-wise (the cosine of the angle at x_j of the triangle x_i, x_j, x_k):
    psi_A(a, b, c) = < (a - b)/||a - b||, (c - b)/||c - b|| >
    L_A = mean over triplets of distinct i, j, k of l_delta( psi_A(s_i, s_j, s_k), psi_A(t_i, t_j, t_k) )

Dividing by mu makes L_D invariant to a rescaling of either embedding; L_A is scale invariant by construction.
The paper's weights are 25 (distance) and 50 (angle). The angle term costs O(N^3) memory per batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.losses.registry import LossOptions


def _off_diagonal(n: int, device: torch.device) -> Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def normalised_distances(x: Tensor, eps: float = 1e-12) -> Tensor:
    """(N, D) -> (N, N) pairwise Euclidean distances divided by their mean over pairs i != j."""
    sq = x.pow(2).sum(dim=1)
    # clamped before the square root: the gradient of sqrt at 0 (the diagonal) would be infinite
    d = (sq[:, None] + sq[None, :] - 2.0 * x @ x.t()).clamp_min(eps).sqrt()
    mask = _off_diagonal(len(x), x.device)
    return d / d[mask].mean().clamp_min(eps)


def triplet_cosines(x: Tensor) -> Tensor:
    """(N, D) -> (N, N, N) with [i, j, k] = cosine of the angle at x_j between x_i and x_k."""
    e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), dim=2)  # e[j, i] = unit vector from x_j to x_i
    return torch.bmm(e, e.transpose(1, 2)).permute(1, 0, 2)  # [j, i, k] -> [i, j, k]


class RKDDistance(nn.Module):
    """Huber loss between the mean-normalised pairwise distance matrices of student and teacher."""

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        s, t = student.flatten(1), teacher.flatten(1)
        if len(s) < 2:
            return student.sum() * 0.0
        mask = _off_diagonal(len(s), s.device)
        return F.smooth_l1_loss(normalised_distances(s)[mask], normalised_distances(t)[mask])


class RKDAngle(nn.Module):
    """Huber loss between the angles every triplet of samples forms, in student and teacher space."""

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        s, t = student.flatten(1), teacher.flatten(1)
        n = len(s)
        if n < 3:
            return student.sum() * 0.0
        off = _off_diagonal(n, s.device)
        distinct = off[:, :, None] & off[None, :, :] & off[:, None, :]  # i != j, j != k, i != k
        return F.smooth_l1_loss(triplet_cosines(s)[distinct], triplet_cosines(t)[distinct])


class RKDDistanceOptions(LossOptions):
    """`{name: rkd_distance, ...}` in distill.losses: the keys of :class:`RKDDistance`."""

    name: Literal["rkd_distance"] = "rkd_distance"
    loss = RKDDistance


class RKDAngleOptions(LossOptions):
    """`{name: rkd_angle, ...}` in distill.losses: the keys of :class:`RKDAngle`."""

    name: Literal["rkd_angle"] = "rkd_angle"
    loss = RKDAngle
