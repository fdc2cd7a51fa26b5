"""A learnable KD temperature trained adversarially on a curriculum (Li, Li, Yang, Cheng, Chen & Yang, AAAI 2023,
"Curriculum Temperature for Knowledge Distillation", CTKD); the ``curriculum_T`` option of ``kd``.

The temperature is one parameter theta, kept in a range by a sigmoid,

    tau = T_min + T_range * sigmoid(theta)                 (paper: tau_init + tau_range * sigmoid(T_pred))

and trained with the student's optimizer on the same loss, through a gradient reversal layer (Ganin & Lempitsky
2015): identity forward, gradient times -lambda backward. The student minimises the KD loss; the temperature
maximises it, i.e. makes distillation harder, by a factor lambda that grows on a cosine curriculum,

    lambda_n = lambda_min + 1/2 (lambda_max - lambda_min) (1 + cos((1 + min(n, E) / E) pi))

from lambda_min at n = 0 to lambda_max at n = E (the paper's E = 10 epochs, lambda in [0, 1]). kdkit counts epochs
from 0 and takes n = epoch + 1, as the authors' training loop (whose epochs count from 1) does, so lambda reaches
lambda_max in the E-th epoch. lambda_min is 0, as in the paper. The authors' code starts theta at 1 (tau = 1 + 20 *
sigmoid(1), about 15.6); here theta starts where tau equals the loss's T, so T keeps its meaning (the starting
temperature; at an end of the range it starts 1e-4 of the range inside) and stays searchable. This is the paper's
global temperature (one tau for all samples), the variant its scripts run by default.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

# the paper's settings: tau in (1, 21), lambda rising from 0 to 1 over 10 epochs
DEFAULT_T_MIN, DEFAULT_T_RANGE, DEFAULT_EPOCHS, DEFAULT_LAMBDA_MAX = 1.0, 20.0, 10, 1.0
EDGE = 1e-4  # the closest a starting sigmoid(theta) comes to 0 or 1


class _ReverseGradient(torch.autograd.Function):
    """y = x forward; dL/dx = -lam * dL/dy backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, lam: float) -> Tensor:
        ctx.lam = lam
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.lam * grad, None


def reverse_gradient(x: Tensor, lam: float) -> Tensor:
    """The gradient reversal layer: `x` unchanged, its gradient multiplied by -`lam`."""
    return _ReverseGradient.apply(x, lam)


def curriculum_lambda(epoch: int, epochs: int = DEFAULT_EPOCHS, lambda_max: float = DEFAULT_LAMBDA_MAX) -> float:
    """lambda at `epoch` (counted from 0): the cosine curriculum from 0 to `lambda_max` over `epochs` epochs."""
    n = min(epoch + 1, epochs)
    return 0.5 * lambda_max * (1.0 + math.cos((1.0 + n / epochs) * math.pi))


def check_curriculum_options(T: float, T_min: float, T_range: float, epochs: int, lambda_max: float) -> None:
    if T_min <= 0 or T_range <= 0:
        raise ValueError(f"T_min and T_range must be > 0, got T_min={T_min}, T_range={T_range}")
    if not T_min <= T <= T_min + T_range:
        raise ValueError(f"with curriculum_T, T (the starting temperature) must lie between T_min={T_min} and "
                         f"T_min + T_range={T_min + T_range}; got T={T}")
    if epochs < 1:
        raise ValueError(f"curriculum_epochs must be >= 1, got {epochs}")
    if lambda_max < 0:
        raise ValueError(f"lambda_max must be >= 0, got {lambda_max}")


class CurriculumTemperature(nn.Module):
    """tau(epoch) as a 0-d tensor whose gradient reaches `theta` reversed and scaled by lambda(epoch).

    `theta` is a parameter of the loss, so of the LossTerm that holds it: the schemes optimise it with the student
    (their `extras`, like FitNets' adapters) and save it beside the student, never with the exported model."""

    def __init__(self, T: float, T_min: float = DEFAULT_T_MIN, T_range: float = DEFAULT_T_RANGE,
                 epochs: int = DEFAULT_EPOCHS, lambda_max: float = DEFAULT_LAMBDA_MAX) -> None:
        super().__init__()
        check_curriculum_options(T, T_min, T_range, epochs, lambda_max)
        self.T_min, self.T_range, self.epochs, self.lambda_max = T_min, T_range, epochs, lambda_max
        # sigmoid(theta) at the start; a sigmoid never reaches 0 or 1, so T at an end of the range (e.g. the default
        # tune space's T = 1) starts a hair inside it
        start = min(max((T - T_min) / T_range, EDGE), 1.0 - EDGE)
        self.theta = nn.Parameter(torch.tensor(math.log(start / (1.0 - start))))
        self.epoch = 0

    def forward(self) -> Tensor:
        lam = curriculum_lambda(self.epoch, self.epochs, self.lambda_max)
        return self.T_min + self.T_range * torch.sigmoid(reverse_gradient(self.theta, lam))

    @torch.no_grad()
    def value(self) -> float:
        """The temperature now."""
        return float(self.T_min + self.T_range * torch.sigmoid(self.theta))
