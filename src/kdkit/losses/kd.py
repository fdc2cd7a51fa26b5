"""Response-based knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    L = alpha * CE(s, y) + (1 - alpha) * T^2 * KL( softmax(t / T) || softmax(s / T) )

KL is summed over classes and averaged over the batch (`batchmean`); the mean over classes would divide the
soft-target term by C. The T^2 factor keeps the gradient of the soft term roughly independent of T, so alpha
means the same thing at every temperature. With alpha = 0 no labels are needed; rows labelled -1 (unlabelled
transfer-set samples) are left out of the CE term.

Two options change how the soft targets are made (both off by default; plain KD keeps its one-node fast path):

- ``standardize: true``: logit standardization (Sun, Ren, Li, Wang & Cao, CVPR 2024, "Logit Standardization in
  Knowledge Distillation"). Each row of teacher and student logits is z-scored before the temperature,

      Z(z; T) = (z - mean(z)) / std(z) / T,     std over the C classes with 1/C (the paper's Algorithm 1),

  and L = alpha * CE(s, y) + (1 - alpha) * T^2 * KL(softmax(Z(t; T)) || softmax(Z(s; T))). T is the paper's "base
  temperature"; the hard-label term reads the raw logits, as the authors' code does. Their CIFAR-100 recipe is
  T = 2 with weights 0.1 (CE) and 9 (KD): ``[{name: kd, T: 2, standardize: true, weight: 9}, {name: ce, weight:
  0.1}]``. (Their code divides by the n-1 standard deviation plus 1e-7, which equals a base temperature larger by
  sqrt(C / (C - 1)); here a row of equal logits, whose std is 0, is divided by 1e-7 and gives uniform targets.)
- ``curriculum_T: true``: the temperature is learnt adversarially on a curriculum (CTKD, Li et al., AAAI 2023; see
  kdkit.losses.curriculum_temperature), starting at T, within (T_min, T_min + T_range), the gradient reversal's
  lambda rising from 0 to lambda_max over curriculum_epochs. Its one parameter trains with the student. The
  authors weigh it as 0.1 * CE + 0.9 * KD, i.e. alpha 0.1. Combines with ``standardize``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from kdkit.errors import ModelError
from kdkit.labels import UNLABELLED, MixedTarget
from kdkit.losses.curriculum_temperature import (
    DEFAULT_EPOCHS,
    DEFAULT_LAMBDA_MAX,
    DEFAULT_T_MIN,
    DEFAULT_T_RANGE,
    CurriculumTemperature,
)
from kdkit.losses.registry import LossOptions
from kdkit.losses.softmax import log_softmax

# KD's defaults, the only ones in kdkit: KDLoss and kd_loss take them, and a config without distill.losses means
# [{name: kd}], which builds KDLoss with them. alpha 0: soft targets only, so unlabelled rows need no label.
DEFAULT_T = 4.0
DEFAULT_ALPHA = 0.0
STD_FLOOR = 1e-7  # a row of equal logits (std 0) is divided by this instead: all zeros, uniform targets


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

    A mixed batch (MixUp, CutMix; see kdkit.data.augment) gives lam * CE(a) + (1 - lam) * CE(b), each over its own
    labelled rows (Zhang et al. 2018); with one lam per row (replayed views), each row's CE is weighted by its own
    lam_i (resp. 1 - lam_i) inside those means."""
    if isinstance(target, MixedTarget) and isinstance(target.lam, Tensor):
        lam = target.lam.to(logits.device, torch.promote_types(logits.dtype, torch.float32))
        return (_row_weighted_ce(logits, target.a, lam, label_smoothing)
                + _row_weighted_ce(logits, target.b, 1.0 - lam, label_smoothing))
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


def _row_weighted_ce(logits: Tensor, target: Tensor, weight: Tensor, label_smoothing: float) -> Tensor:
    """mean over the labelled rows of weight_i * CE_i (label smoothing as in hard_label_ce); 0 without labels."""
    labelled = target != UNLABELLED
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    log_p = log_softmax(logits[labelled])
    rows = -log_p.gather(1, target[labelled, None]).squeeze(1)
    if label_smoothing:
        rows = (1.0 - label_smoothing) * rows - label_smoothing * log_p.mean(1)
    return (rows * weight[labelled]).mean()


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


def standardize_logits(logits: Tensor) -> Tensor:
    """(z - mean(z)) / std(z) per row, std with 1/C (Sun et al. 2024, Algorithm 1), in float32 at least."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    centred = logits - logits.mean(dim=1, keepdim=True)
    # the floor on the variance, not on its square root, whose gradient at 0 is infinite
    std = centred.square().mean(dim=1, keepdim=True).clamp_min(STD_FLOOR * STD_FLOOR).sqrt()
    return centred / std


def soft_kl_tensor_T(student_logits: Tensor, teacher_logits: Tensor, temperature: Tensor, factor: float) -> Tensor:
    """factor * T^2 * KL(softmax(t/T) || softmax(s/T)), batchmean, for a temperature that is a tensor with a gradient
    (composed ops: the gradient reaches T through both softmaxes and the T^2 factor, as in CTKD)."""
    log_ps = torch.log_softmax(student_logits / temperature, dim=1)
    log_pt = torch.log_softmax(teacher_logits / temperature, dim=1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(1).mean() * (temperature * temperature * factor)


class KDLoss(nn.Module):
    """Hinton KD: alpha * CE(s, y) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T)), batchmean; with
    `standardize`, logit standardization (Sun et al. 2024); with `curriculum_T`, CTKD's learnt temperature (Li et al.
    2023), starting at T (see the module docstring).

    Its defaults (DEFAULT_T = 4, DEFAULT_ALPHA = 0) are the only ones: a config without distill.losses and
    ``{name: kd}`` both build this class with them. With `curriculum_T`, call :meth:`set_epoch` every epoch (a
    LossTerm does: ``reads_epoch``)."""

    def __init__(self, T: float = DEFAULT_T, alpha: float = DEFAULT_ALPHA, label_smoothing: float = 0.0,
                 standardize: bool = False, curriculum_T: bool = False, T_min: float = DEFAULT_T_MIN,
                 T_range: float = DEFAULT_T_RANGE, curriculum_epochs: int = DEFAULT_EPOCHS,
                 lambda_max: float = DEFAULT_LAMBDA_MAX) -> None:
        super().__init__()
        check_kd_options(T, alpha, label_smoothing)  # once here, not on every step
        self.T, self.alpha, self.label_smoothing = T, alpha, label_smoothing
        self.standardize = standardize
        self.curriculum = (CurriculumTemperature(T, T_min, T_range, curriculum_epochs, lambda_max) if curriculum_T
                           else None)
        self.reads_epoch = curriculum_T
        self.plain = not (standardize or curriculum_T)

    def set_epoch(self, epoch: int) -> None:
        """The epoch (from 0) that sets CTKD's lambda; no effect without `curriculum_T`."""
        if self.curriculum is not None:
            self.curriculum.epoch = epoch

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        if self.plain:
            return _kd(student, teacher, target, self.T, self.alpha, self.label_smoothing)
        return self._variant(student, teacher, target)

    def _variant(self, student: Tensor, teacher: Tensor, target: Tensor | None) -> Tensor:
        if student.dim() != 2:
            raise ModelError(f"KD compares logits (N, C), one row per sample; got {tuple(student.shape)}")
        s, t = (standardize_logits(student), standardize_logits(teacher)) if self.standardize else (student, teacher)
        if self.curriculum is None:
            loss = soft_target_kl(s, t, self.T, factor=1.0 - self.alpha)
        else:
            s, t = (z.to(torch.promote_types(z.dtype, torch.float32)) for z in (s, t))
            loss = soft_kl_tensor_T(s, t, self.curriculum(), 1.0 - self.alpha)
        if self.alpha > 0:
            loss = loss + self.alpha * hard_label_ce(student, target, self.label_smoothing)
        return loss

    def temperature(self) -> float:
        """The temperature in use now: T, or CTKD's learnt one."""
        return self.T if self.curriculum is None else self.curriculum.value()


class KDOptions(LossOptions):
    """`{name: kd, ...}` in distill.losses: the keys of :class:`KDLoss`."""

    name: Literal["kd"] = "kd"
    T: float = DEFAULT_T
    alpha: float = DEFAULT_ALPHA
    label_smoothing: float = 0.0
    standardize: bool = False
    curriculum_T: bool = False
    T_min: float = DEFAULT_T_MIN
    T_range: float = DEFAULT_T_RANGE
    curriculum_epochs: int = DEFAULT_EPOCHS
    lambda_max: float = DEFAULT_LAMBDA_MAX
    loss = KDLoss
