"""Response-based knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    L = alpha * CE(s, y) + (1 - alpha) * T^2 * KL( softmax(t / T) || softmax(s / T) )

KL is summed over classes and averaged over the batch (`batchmean`); the mean over classes would divide the
soft-target term by C. The T^2 factor keeps the gradient of the soft term roughly independent of T, so alpha
means the same thing at every temperature. With alpha = 0 no labels are needed; rows labelled -1 (unlabelled
transfer-set samples) are left out of the CE term.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from kdkit.augment import MixedTarget
from kdkit.errors import ModelError
from kdkit.labels import UNLABELLED
from kdkit.losses.softmax import log_softmax

# KD's defaults, the only ones in kdkit: KDLoss and kd_loss take them, and a config without distill.losses means
# [{name: kd}], which builds KDLoss with them. alpha 0: soft targets only, so unlabelled rows need no label.
DEFAULT_T = 4.0
DEFAULT_ALPHA = 0.0


def _log_probs(logits: Tensor, temperature: float) -> Tensor:
    """log softmax(logits / T) in float32 at least (float64 stays float64); no division at T = 1."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return log_softmax(logits if temperature == 1.0 else logits / temperature)


class _SoftTargetKL(torch.autograd.Function):
    """T^2 * sum_i w_i KL(p_t,i || p_s,i) / N (w = 1: batchmean) as one autograd node. Its gradients have closed
    forms, d/ds_i = T w_i/N (p_s,i - p_t,i) and d/dt_i = T w_i/N p_t,i ((log p_t,i - log p_s,i) - KL_i), so
    backward is two element-wise expressions instead of the dozen small nodes of the composed ops (which dominate a
    small model's step). Computed in float32 at least (float64 stays float64); gradients come back in each input's
    dtype."""

    @staticmethod
    def forward(ctx: Any, student: Tensor, teacher: Tensor, temperature: float, row_weights: Tensor | None,
                factor: float) -> Tensor:
        log_ps, log_pt = _log_probs(student, temperature), _log_probs(teacher, temperature)
        p_t = log_pt.exp()
        gap = log_pt - log_ps
        # factor * w_i / N per row: a plain number without row weights, so the common case adds no tensor op
        per_row = factor / len(gap) if row_weights is None else row_weights.to(gap.dtype)[:, None] * (factor / len(gap))
        ctx.temperature, ctx.dtypes, ctx.per_row = temperature, (student.dtype, teacher.dtype), per_row
        ctx.save_for_backward(log_ps, p_t, gap)
        kl = p_t * gap
        if row_weights is None:
            return kl.sum() * (temperature * temperature * per_row)
        return (kl * per_row).sum() * (temperature * temperature)

    @staticmethod
    @once_differentiable  # a second derivative would need the forward's graph, which this node does not keep
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        log_ps, p_t, gap = ctx.saved_tensors
        scale = grad * ctx.temperature * ctx.per_row
        grad_s = grad_t = None
        if ctx.needs_input_grad[0]:
            grad_s = ((log_ps.exp() - p_t) * scale).to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:  # online schemes, data-free generators: the teacher side learns too
            grad_t = (p_t * (gap - (p_t * gap).sum(1, keepdim=True)) * scale).to(ctx.dtypes[1])
        return grad_s, grad_t, None, None, None


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float,
                   row_weights: Tensor | None = None, factor: float = 1.0) -> Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes and averaged over the batch; with `row_weights`
    w (N,), T^2 * sum_i w_i KL_i / N (weights that average 1 give a weighted mean). `factor` multiplies the value
    (and its gradients) inside the one node: a weight that costs no extra operation."""
    if student_logits.dim() != 2:  # the softmax is over dim 1: per-token logits would be normalised over tokens
        raise ModelError(f"KD compares logits (N, C), one row per sample; got {tuple(student_logits.shape)}; for "
                         "one prediction per token use token_kd")
    if _transformed(student_logits) or _transformed(teacher_logits):
        # inside torch.func (vmap, grad, ...): the same value from composed ops, which the transforms understand
        log_ps, log_pt = _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)
        rows = (log_pt.exp() * (log_pt - log_ps)).sum(1)
        return (rows if row_weights is None else rows * row_weights).mean() * (temperature * temperature * factor)
    return _SoftTargetKL.apply(student_logits, teacher_logits, temperature, row_weights, factor)


def _transformed(x: Tensor) -> bool:
    """Whether `x` is a torch.func transform's wrapper (the one node's ctx-style forward does not support them;
    its setup_context form does, at 45% more time per call)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


def hard_label_ce(logits: Tensor, target: Tensor | MixedTarget | None, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy over labelled rows (or tokens) only (label -1 = unlabelled); zero when there are no labels.
    With label smoothing eps: (1 - eps) * NLL + eps * mean_c(-log p_c), as F.cross_entropy defines it.

    A mixed batch (MixUp, CutMix; see kdkit.augment) gives lam * CE(a) + (1 - lam) * CE(b), each over its own
    labelled rows (Zhang et al. 2018)."""
    if isinstance(target, MixedTarget):
        return (target.lam * hard_label_ce(logits, target.a, label_smoothing)
                + (1.0 - target.lam) * hard_label_ce(logits, target.b, label_smoothing))
    if target is None:
        return logits.sum() * 0.0  # keeps the graph connected
    labelled = target != UNLABELLED
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    if logits.dim() > 2:  # one prediction per token (N, L, C) against labels (N, L): the mean over labelled tokens
        logits, target, labelled = logits.reshape(-1, logits.shape[-1]), target.reshape(-1), labelled.reshape(-1)
    log_p = log_softmax(logits)
    nll = F.nll_loss(log_p, target, ignore_index=UNLABELLED)
    if label_smoothing == 0.0:
        return nll
    return (1.0 - label_smoothing) * nll - label_smoothing * log_p[labelled].mean()


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
    # (1 - alpha) is applied inside KL's one node: every node counts in a small model's step
    loss = soft_target_kl(student_logits, teacher_logits, temperature, factor=1.0 - alpha)
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
