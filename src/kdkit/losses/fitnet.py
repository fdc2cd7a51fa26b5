"""FitNets hints (Romero et al. 2015, "FitNets: Hints for Thin Deep Nets").

    L = 1/(N * D) * sum_i || r(s_i) - t_i ||_2^2          (mean squared error over every element)

s_i is the student's guided-layer output and t_i the teacher's hint-layer output for sample i; r is the
regressor that maps the student's feature to the teacher's shape. Here r is the term's adapter, created
automatically when the shapes differ (see :mod:`kdkit.adapters`), trained with the student and never exported.
The paper writes the sum with a factor 1/2; the mean over elements keeps the value independent of the feature
size, so one weight (the usual one is 100) works across layers.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.errors import ModelError
from kdkit.losses.registry import LossOptions


class FitNet(nn.Module):
    """Mean squared error between the (adapted) student feature and the teacher feature."""

    needs_adapter = True  # the regressor r: student shape -> teacher shape

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        if student.shape != teacher.shape:
            raise ModelError(
                f"fitnet compares features of equal shape, got student {tuple(student.shape)} and teacher "
                f"{tuple(teacher.shape)}; attach adapters first (scheme.attach_adapters(example_x))"
            )
        return F.mse_loss(student, teacher)


class FitNetOptions(LossOptions):
    """`{name: fitnet, ...}` in distill.losses: the keys of :class:`FitNet`."""

    name: Literal["fitnet"] = "fitnet"
    loss = FitNet
