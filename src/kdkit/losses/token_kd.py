"""Word-level (token-level) knowledge distillation for per-position logits (N, L, C): sequence labelling, language
models (Kim & Rush 2016, "Sequence-Level Knowledge Distillation", their word-level KD; Hinton et al. 2015).

    KD  = T^2 * sum_{valid (n, l)} KL( softmax(t_nl / T) || softmax(s_nl / T) ) / #valid
    CE  = sum_{valid (n, l)} -log softmax(s_nl)[y_nl] / #valid
    L   = (1 - alpha) * KD + alpha * CE

KL is summed over the C classes of one position and averaged over the valid positions only, so padding neither
adds to the loss nor dilutes it (a batch of short sentences weighs the same as one of long ones). Valid means
``target != -1`` when targets are given (pad positions carry -1), else ``mask`` (True = valid), else every
position. alpha weighs the two terms as in :class:`kdkit.losses.KDLoss`, so the same alpha means the same thing.
Any leading shape works, (N, C) included (one position per row: then it equals ``kd`` with batchmean).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.errors import ConfigError
from kdkit.labels import UNLABELLED, MixedTarget
from kdkit.losses.kd import check_kd_options
from kdkit.losses.registry import LossOptions


def valid_positions(logits: Tensor, target: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Boolean (N, L): positions that count. `mask` (True = valid) wins over `target` (-1 = padding)."""
    if mask is not None:
        return mask.to(torch.bool)
    if target is not None:
        return target != UNLABELLED
    return torch.ones(logits.shape[:-1], dtype=torch.bool, device=logits.device)


def token_kd_loss(
    student_logits: Tensor, teacher_logits: Tensor, target: Tensor | None = None, mask: Tensor | None = None,
    temperature: float = 2.0, alpha: float = 0.0,
) -> Tensor:
    """Functional form of :class:`TokenKD`; logits (N, L, C), target and mask (N, L) (or any shape (..., C)). Checks
    T and alpha on every call; TokenKD checks them once, when built."""
    check_kd_options(temperature, alpha)
    return _token_kd(student_logits, teacher_logits, target, mask, temperature, alpha)


def _token_kd(student_logits: Tensor, teacher_logits: Tensor, target: Tensor | None, mask: Tensor | None,
              temperature: float, alpha: float) -> Tensor:
    """The formula for options already checked; the tensors are checked here, on every call."""
    if isinstance(target, MixedTarget):  # its targets also mark the valid positions, which a mixed batch blurs
        raise ConfigError("token_kd reads one label per position and cannot take MixUp/CutMix labels; remove mixup "
                          "and cutmix from train.augment or use kd")
    if student_logits.dim() < 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"token_kd needs student and teacher logits of the same shape (N, L, C), got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    valid = valid_positions(student_logits, target, mask)
    count = valid.sum()
    if not bool(count):
        return student_logits.sum() * 0.0  # an all-padding batch: nothing to learn, graph kept connected
    s, t = student_logits[valid], teacher_logits[valid]  # (#valid, C): boolean indexing flattens the positions
    log_p_s = F.log_softmax(s / temperature, dim=-1)
    log_p_t = F.log_softmax(t / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
    loss = (1.0 - alpha) * temperature**2 * kl
    if alpha > 0 and target is not None:
        labelled = target[valid]
        labelled_rows = labelled != UNLABELLED  # a given mask may keep positions that have no label
        if bool(labelled_rows.any()):
            loss = loss + alpha * F.cross_entropy(s[labelled_rows], labelled[labelled_rows])
    return loss


class TokenKD(nn.Module):
    """Word-level KD over valid positions: (1 - alpha) * T^2 * mean KL(p_t^T || p_s^T) + alpha * CE."""

    per_token = True  # takes logits (N, L, C)

    def __init__(self, T: float = 2.0, alpha: float = 0.0) -> None:
        super().__init__()
        check_kd_options(T, alpha)  # once here, not on every step
        self.T, self.alpha = T, alpha

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        return _token_kd(student, teacher, target, mask, self.T, self.alpha)


__all__ = ["TokenKD", "token_kd_loss", "valid_positions"]


class TokenKDOptions(LossOptions):
    """`{name: token_kd, ...}` in distill.losses: the keys of :class:`TokenKD`."""

    name: Literal["token_kd"] = "token_kd"
    T: float = 2.0
    alpha: float = 0.0
    loss = TokenKD
