"""Response-based knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    L = alpha * CE(s, y) + (1 - alpha) * T^2 * KL( softmax(t / T) || softmax(s / T) )

KL is summed over classes and averaged over the batch (`batchmean`); the mean over classes would divide the
soft-target term by C. The T^2 factor keeps the gradient of the soft term roughly independent of T, so alpha
means the same thing at every temperature. With alpha = 0 no labels are needed; rows labelled -1 (unlabelled
transfer-set samples) are left out of the CE term.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.augment import MixedTarget
from kdkit.errors import ModelError
from kdkit.labels import UNLABELLED

# KD's defaults, the only ones in kdkit: KDLoss and kd_loss take them, and a config without distill.losses means
# [{name: kd}], which builds KDLoss with them. alpha 0: soft targets only, so unlabelled rows need no label.
DEFAULT_T = 4.0
DEFAULT_ALPHA = 0.0


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
    if target is None or not bool((target != UNLABELLED).any()):
        return logits.sum() * 0.0  # keeps the graph connected
    if logits.dim() > 2:  # one prediction per token (N, L, C) against labels (N, L): the mean over labelled tokens
        logits, target = logits.reshape(-1, logits.shape[-1]), target.reshape(-1)
    return F.cross_entropy(logits, target, ignore_index=UNLABELLED, label_smoothing=label_smoothing)


def check_kd_options(temperature: float, alpha: float, label_smoothing: float = 0.0) -> None:
    """The ranges KD's options must lie in; checked once, when a loss is built (or per call of :func:`kd_loss`)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature T must be > 0, got {temperature}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")


def _kd(student_logits: Tensor, teacher_logits: Tensor, target: Tensor | MixedTarget | None, temperature: float,
        alpha: float, label_smoothing: float) -> Tensor:
    """The formula alone, for options already checked (KDLoss checks them once, in its constructor)."""
    loss = (1.0 - alpha) * soft_target_kl(student_logits, teacher_logits, temperature)
    if alpha > 0:
        loss = loss + alpha * hard_label_ce(student_logits, target, label_smoothing)
    return loss


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor | None = None,
    temperature: float = DEFAULT_T,
    alpha: float = DEFAULT_ALPHA,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Functional form of :class:`KDLoss` (its defaults are the class's): checks its options on every call, which
    costs three comparisons; a training loop that calls it every step is better served by KDLoss."""
    check_kd_options(temperature, alpha, label_smoothing)
    return _kd(student_logits, teacher_logits, target, temperature, alpha, label_smoothing)


class KDLoss(nn.Module):
    """Hinton KD: alpha * CE(s, y) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T)), batchmean.

    Its defaults (DEFAULT_T = 4, DEFAULT_ALPHA = 0) are the only ones: a config without distill.losses and
    ``{name: kd}`` both build this class with them."""

    def __init__(self, T: float = DEFAULT_T, alpha: float = DEFAULT_ALPHA, label_smoothing: float = 0.0) -> None:
        super().__init__()
        check_kd_options(T, alpha, label_smoothing)  # once here, not on every step
        self.T, self.alpha, self.label_smoothing = T, alpha, label_smoothing

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        return _kd(student, teacher, target, self.T, self.alpha, self.label_smoothing)
