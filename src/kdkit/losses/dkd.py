"""Decoupled knowledge distillation (Zhao, Cui, Song, Qiu & Liang 2022, "Decoupled Knowledge Distillation").

Hinton's KD loss splits into a target-class part and a non-target-class part, KD = TCKD + (1 - p^t_y) NCKD, which
couples the useful NCKD to the teacher's confidence. DKD weights the two parts freely:

    b     = [p_y, 1 - p_y]                            binary target/rest probabilities,  p = softmax(z / T)
    p^    = softmax(z_{c != y} / T)                   distribution over the non-target classes only
    TCKD  = KL(b^t || b^s),    NCKD = KL(p^^t || p^^s)
    L     = T^2 * 1/N * sum_i ( alpha * TCKD_i + beta * NCKD_i )

Defaults alpha = 1, beta = 8, T = 4 are the paper's CIFAR-100 settings. The paper ramps the DKD loss in linearly
over the first 20 epochs; a term built from config gets ``warmup_epochs: 20`` unless the config sets another value
(``default_warmup_epochs``). Use it together with a ``ce`` term, as the paper does. Rows without a label (-1,
transfer-set samples) take the teacher's top class as their target class, and so do rows of a MixUp/CutMix batch
(:class:`kdkit.labels.MixedTarget`) whose two parts carry different labels: such a row has no single target class.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.labels import UNLABELLED, MixedTarget
from kdkit.losses.registry import LossOptions
from kdkit.losses.softmax import log_softmax


def _binary_log_probs(log_p: Tensor, target_mask: Tensor) -> Tensor:
    """log [p_y, 1 - p_y] from per-class log probabilities, computed stably in log space."""
    log_target = log_p.masked_fill(~target_mask, float("-inf")).logsumexp(dim=1)
    log_rest = log_p.masked_fill(target_mask, float("-inf")).logsumexp(dim=1)
    return torch.stack([log_target, log_rest], dim=1)


def dkd_loss(student: Tensor, teacher: Tensor, target: Tensor, alpha: float, beta: float, T: float) -> Tensor:
    """Functional form of :class:`DKD`; `target` holds one class per row (no -1)."""
    n, c = student.shape
    mask = F.one_hot(target, c).bool()
    log_ps, log_pt = log_softmax(student / T), log_softmax(teacher / T)
    tckd = F.kl_div(_binary_log_probs(log_ps, mask), _binary_log_probs(log_pt, mask), reduction="batchmean",
                    log_target=True)
    rest_s = log_softmax(student[~mask].view(n, c - 1) / T)
    rest_t = log_softmax(teacher[~mask].view(n, c - 1) / T)
    nckd = F.kl_div(rest_s, rest_t, reduction="batchmean", log_target=True)
    return T**2 * (alpha * tckd + beta * nckd)


class DKD(nn.Module):
    """alpha * TCKD + beta * NCKD, scaled by T^2 and averaged over the batch."""

    default_warmup_epochs = 20

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, T: float = 4.0) -> None:
        super().__init__()
        if T <= 0:
            raise ValueError(f"temperature T must be > 0, got {T}")
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta, self.T = alpha, beta, T

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | MixedTarget | None = None) -> Tensor:
        if isinstance(target, MixedTarget):  # both parts of the same class keep it; others count as unlabelled
            target = torch.where(target.a == target.b, target.a, UNLABELLED)
        top = teacher.argmax(dim=1)
        target = top if target is None else torch.where(target == UNLABELLED, top, target)
        return dkd_loss(student, teacher, target, self.alpha, self.beta, self.T)


class DKDOptions(LossOptions):
    """`{name: dkd, ...}` in distill.losses: the keys of :class:`DKD`."""

    name: Literal["dkd"] = "dkd"
    alpha: float = 1.0
    beta: float = 8.0
    T: float = 4.0
    loss = DKD
