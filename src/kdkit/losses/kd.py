"""Response-based knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    L = alpha * CE(s, y) + (1 - alpha) * T^2 * KL( softmax(t / T) || softmax(s / T) )

KL is summed over classes and averaged over the batch (`batchmean`); the mean over classes would divide the
soft-target term by C. The T^2 factor keeps the gradient of the soft term roughly independent of T, so alpha
means the same thing at every temperature. With alpha = 0 no labels are needed; rows labelled -1 (unlabelled
transfer-set samples) are left out of the CE term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.augment import MixedTarget
from kdkit.errors import ModelError

IGNORE_INDEX = -1


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes and averaged over the batch."""
    if student_logits.dim() != 2:  # the softmax is over dim 1: per-token logits would be normalised over tokens
        raise ModelError(f"KD compares logits (N, C), one row per sample; got {tuple(student_logits.shape)}; for "
                         "one prediction per token use token_kd")
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def hard_label_ce(logits: Tensor, target: Tensor | MixedTarget | None, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy over labelled rows (or tokens) only (label -1 = unlabelled); zero when there are no labels.

    A mixed batch (MixUp, CutMix; see kdkit.augment) gives lam * CE(a) + (1 - lam) * CE(b), each over its own
    labelled rows (Zhang et al. 2018)."""
    if isinstance(target, MixedTarget):
        return (target.lam * hard_label_ce(logits, target.a, label_smoothing)
                + (1.0 - target.lam) * hard_label_ce(logits, target.b, label_smoothing))
    if target is None or not bool((target != IGNORE_INDEX).any()):
        return logits.sum() * 0.0  # keeps the graph connected
    if logits.dim() > 2:  # one prediction per token (N, L, C) against labels (N, L): the mean over labelled tokens
        logits, target = logits.reshape(-1, logits.shape[-1]), target.reshape(-1)
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor | None = None,
    temperature: float = 4.0,
    alpha: float = 0.0,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Functional form of :class:`KDLoss`."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature T must be > 0, got {temperature}")
    loss = (1.0 - alpha) * soft_target_kl(student_logits, teacher_logits, temperature)
    if alpha > 0:
        loss = loss + alpha * hard_label_ce(student_logits, target, label_smoothing)
    return loss


class KDLoss(nn.Module):
    """Hinton KD: alpha * CE(s, y) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T)), batchmean."""

    def __init__(self, T: float = 4.0, alpha: float = 0.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), None, T, alpha)  # validate arguments early
        self.T, self.alpha, self.label_smoothing = T, alpha, label_smoothing

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        return kd_loss(student, teacher, target, self.T, self.alpha, self.label_smoothing)
