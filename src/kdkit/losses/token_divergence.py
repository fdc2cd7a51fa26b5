"""Shared machinery of the token-level divergences (forward_kl, reverse_kl, jsd, tv): which positions count, and
the sum over the vocabulary computed in chunks so that memory stays bounded for large vocabularies.

For logits s (student) and t (teacher) of shape (..., V), a divergence D is a sum over the vocabulary of an
elementwise term f(log p_t[v], log p_s[v]); the loss is its mean over the valid positions:

    L = scale(T) * sum_{valid positions i} sum_v f(log softmax(t_i / T)[v], log softmax(s_i / T)[v]) / #valid

Valid positions: ``mask`` (True = counts) when given, else ``target >= 0`` (so both kdkit's -1 and Hugging Face's
-100 mark ignored positions), else every position. With ``chunk_size`` the log-normalisers are computed chunk by
chunk (a running logsumexp) and each chunk's term is recomputed in the backward pass (activation checkpointing),
so no (positions, V) float intermediate beyond the logits themselves is kept; the value is the same as without
chunks up to float rounding.

Masked vocabulary entries (logits of -inf, or of finfo.min, which overflow to -inf at T < 1) have probability 0 and
contribute 0 (0 * log 0 = 0, the limit), with finite gradients: :func:`plogratio` keeps the 0 * inf products out
of both the forward and the backward pass. Where the teacher puts mass on an id the student masks, forward KL is
+inf, its true value.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kdkit.errors import ConfigError
from kdkit.labels import MixedTarget
from kdkit.losses.registry import LossOptions

Elementwise = Callable[[Tensor, Tensor], Tensor]  # (log p_teacher, log p_student) -> per-class term, same shape


def token_mask(logits: Tensor, target: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Boolean mask of the positions that count, shape logits.shape[:-1]: `mask` wins, else `target >= 0`."""
    if isinstance(target, MixedTarget):
        raise ConfigError("token-level divergences read one label per position and cannot take MixUp/CutMix labels; "
                          "remove mixup and cutmix from train.augment")
    if mask is not None:
        valid = mask.to(torch.bool)
    elif target is not None:
        valid = target >= 0
    else:
        return torch.ones(logits.shape[:-1], dtype=torch.bool, device=logits.device)
    if valid.shape != logits.shape[:-1]:
        raise ValueError(f"mask/labels of shape {tuple(valid.shape)} do not match logits {tuple(logits.shape)}")
    return valid


def plogratio(log_p: Tensor, log_q: Tensor) -> Tensor:
    """p * (log p - log q), elementwise, with p = exp(log_p): 0 wherever p = 0 (masked or underflowed ids), and
    a zero gradient there instead of 0 * inf = NaN (the inputs are made finite before the product)."""
    present = log_p.exp() > 0
    safe_p = torch.where(present, log_p, 0.0)
    safe_q = torch.where(present, log_q, 0.0)
    return torch.where(present, safe_p.exp() * (safe_p - safe_q), 0.0)


def upcast(x: Tensor) -> Tensor:
    """At least float32 (half and bfloat16 logits are compared in float32; float64 stays float64)."""
    return x if x.dtype == torch.float64 else x.float()


def _sum_exp(x: Tensor, shift: Tensor, temperature: float) -> Tensor:
    return torch.exp(upcast(x) / temperature - shift.unsqueeze(-1)).sum(-1)


def _chunk_lse(x: Tensor, temperature: float, chunk_size: int) -> Tensor:
    """logsumexp(x / T) over the last dim, one vocabulary chunk at a time: shift + log sum exp(x / T - shift) with
    the row maximum as the (constant) shift, so that a chunk of masked ids adds exp(-inf) = 0 to the sum and 0 to
    the gradient; each chunk's exp is recomputed in the backward pass rather than kept."""
    with torch.no_grad():
        shift = torch.stack([(upcast(x[..., s:s + chunk_size]) / temperature).amax(-1)
                             for s in range(0, x.shape[-1], chunk_size)], -1).amax(-1)
        shift = torch.where(torch.isfinite(shift), shift, 0.0)
    total = None
    for start in range(0, x.shape[-1], chunk_size):
        args = (x[..., start:start + chunk_size], shift, temperature)
        part = (checkpoint(_sum_exp, *args, use_reentrant=False) if torch.is_grad_enabled() and x.requires_grad
                else _sum_exp(*args))
        total = part if total is None else total + part
    assert total is not None
    return shift + total.log()


def divergence_per_position(
    elementwise: Elementwise, student: Tensor, teacher: Tensor, temperature: float = 1.0,
    chunk_size: int | None = None,
) -> Tensor:
    """sum_v f(log p_t[v], log p_s[v]) for each row of (P, V) logits at temperature T; shape (P,)."""
    vocab = student.shape[-1]
    if chunk_size is None or chunk_size >= vocab:
        log_t = torch.log_softmax(upcast(teacher) / temperature, dim=-1)
        log_s = torch.log_softmax(upcast(student) / temperature, dim=-1)
        return elementwise(log_t, log_s).sum(-1)
    lse_t = _chunk_lse(teacher, temperature, chunk_size)
    lse_s = _chunk_lse(student, temperature, chunk_size)

    def chunk_term(s: Tensor, t: Tensor, ls: Tensor, lt: Tensor) -> Tensor:
        log_t = upcast(t) / temperature - lt.unsqueeze(-1)
        log_s = upcast(s) / temperature - ls.unsqueeze(-1)
        return elementwise(log_t, log_s).sum(-1)

    total = None
    for start in range(0, vocab, chunk_size):
        args = (student[..., start:start + chunk_size], teacher[..., start:start + chunk_size], lse_s, lse_t)
        part = (checkpoint(chunk_term, *args, use_reentrant=False) if torch.is_grad_enabled() and
                student.requires_grad else chunk_term(*args))
        total = part if total is None else total + part
    assert total is not None
    return total


class TokenDivergence(nn.Module):
    """Base of the per-token divergences: subclasses set `elementwise` (and `temperature_squared`).

    forward(student (..., V), teacher (..., V), target (...) or None, mask (...) or None) -> scalar mean over the
    valid positions; a batch with no valid position gives 0 (graph kept connected)."""

    per_token = True  # takes logits (N, L, V); LossTerm lets it through
    temperature_squared = True  # multiply by T^2 so gradients keep their scale across temperatures (Hinton et al.)
    name = "divergence"

    def __init__(self, T: float = 1.0, chunk_size: int | None = None) -> None:
        super().__init__()
        if T <= 0:
            raise ValueError(f"temperature T must be > 0, got {T}")
        if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) != chunk_size
                                       or chunk_size < 1):
            raise ValueError(f"chunk_size must be a whole number >= 1 (or None: the whole vocabulary), got "
                             f"{chunk_size!r}")
        self.T, self.chunk_size = float(T), chunk_size

    def elementwise(self, log_t: Tensor, log_s: Tensor) -> Tensor:
        raise NotImplementedError

    def per_position(self, student: Tensor, teacher: Tensor) -> Tensor:
        """The divergence of each row of (P, V) logits, scale included; shape (P,)."""
        d = divergence_per_position(self.elementwise, student, teacher, self.T, self.chunk_size)
        return d * self.T**2 if self.temperature_squared else d

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        if student.dim() < 2 or teacher is None or student.shape != teacher.shape:
            raise ValueError(f"{self.name} needs student and teacher logits of the same shape (N, L, V), got "
                             f"{tuple(student.shape)} and {tuple(teacher.shape) if teacher is not None else None}")
        valid = token_mask(student, target, mask)
        if not bool(valid.any()):
            return student.sum() * 0.0
        return self.per_position(student[valid], teacher[valid]).mean()


__all__ = ["Elementwise", "TokenDivergence", "divergence_per_position", "plogratio", "token_mask", "upcast"]


class TokenDivergenceOptions(LossOptions):
    """The keys every token divergence takes (a base: registers nothing until a subclass names its loss)."""

    T: float = 1.0
    chunk_size: int | None = None
