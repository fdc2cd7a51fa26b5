"""Similarity-preserving distillation (Tung & Mori 2019, "Similarity-Preserving Knowledge Distillation").

    G   = Q Q^T,   Q = reshape(A, (N, -1))               (N, N) similarities of the batch's activations
    G~  = G with each row divided by its L2 norm
    L   = 1/N^2 * || G~_s - G~_t ||_F^2

Only the N x N similarity matrices are compared, so student and teacher layers may have any shapes (no adapter).
Permuting the batch permutes rows and columns of both matrices alike, which leaves the loss unchanged. The
paper's weight is gamma = 3000.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.losses.registry import LossOptions


def similarity(x: Tensor) -> Tensor:
    """Row-normalised Gram matrix of the flattened activations."""
    q = x.flatten(1)
    return F.normalize(q @ q.t(), dim=1)


class SimilarityPreserving(nn.Module):
    """Mean squared difference between the row-normalised batch similarity matrices."""

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        return (similarity(student) - similarity(teacher)).pow(2).mean()


class SimilarityPreservingOptions(LossOptions):
    """`{name: sp, ...}` in distill.losses: the keys of :class:`SimilarityPreserving`."""

    name: Literal["sp"] = "sp"
    loss = SimilarityPreserving
