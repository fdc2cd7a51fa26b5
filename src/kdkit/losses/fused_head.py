"""A token divergence computed from the final hidden states and the LM heads of both models, chunk by chunk of
tokens, so that the (tokens, V) logits of the two models are never held whole: at a vocabulary of 150k, 1,024
tokens and a batch of 8, each model's float32 logits take 4.9 GB, which is what LM distillation runs out of first.
The same idea as Liger-Kernel's fused linear JSD (Hsu et al. 2024, "Liger Kernel: Efficient Triton Kernels for
LLM Training"), in plain PyTorch.

    L = scale(T) * mean_{valid i} sum_v f(log softmax(t_i / T)[v], log softmax(s_i / T)[v]),
    s_i = W_s h_i^s (+ b_s),   t_i = W_t h_i^t (+ b_t)

with f the elementwise term of forward_kl, reverse_kl, jsd or tv: the value of ``divergence(student_head(h_s),
teacher_head(h_t), target, mask)``, and its gradients for the student's hidden states, head weight and bias. The
forward pass computes, chunk by chunk, the logits, the divergence and its gradient g for the student's logits, and
accumulates g W_s into the hidden states' gradient and g^T h into the head's (Liger's order); the backward pass only
scales them. With ``recompute=True`` the forward pass keeps the inputs only and the backward pass computes each
chunk's logits again: two more (tokens x H x V) matrix products per step (bench/lm_fused_head.py: 1.4x the plain
path's CPU time at V = 32k, against 0.9x), for not holding the two gradients between the passes. Peak extra memory
either way: a few (chunk_size, V) float tensors. Outside autograd (no_grad, or no input that needs a gradient) only
the value is computed. The teacher is frozen: no gradient reaches its hidden states or head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from kdkit.losses.token_divergence import Elementwise, TokenDivergence, divergence_per_position, token_mask


def _logits(hidden: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    out = hidden @ weight.t()
    return out + bias if bias is not None else out


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    """Sums in float32 at least (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


class _Grads:
    """The gradients of the summed divergence for the student's hidden states, head weight and bias, filled
    chunk by chunk (accumulated in float32 at least)."""

    def __init__(self, h_s: Tensor, w_s: Tensor, b_s: Tensor | None, needs: tuple[bool, ...]) -> None:
        self.acc = _accumulator(w_s.dtype)
        self.h = torch.zeros_like(h_s) if needs[0] else None
        self.w = torch.zeros(w_s.shape, dtype=self.acc, device=w_s.device) if needs[1] else None
        self.b = torch.zeros(w_s.shape[0], dtype=self.acc, device=w_s.device) if b_s is not None and needs[2] \
            else None

    def add(self, rows: slice, g: Tensor, h_s: Tensor, w_s: Tensor) -> None:
        if self.h is not None:
            self.h[rows] = (g @ w_s.to(g.dtype)).to(self.h.dtype)
        if self.w is not None:
            self.w += g.t().to(self.acc) @ h_s[rows].to(self.acc)
        if self.b is not None:
            self.b += g.to(self.acc).sum(0)

    def scaled(self, grad: Tensor, w_s: Tensor, b_s: Tensor | None) -> tuple[Tensor | None, ...]:
        return (self.h * grad.to(self.h.dtype) if self.h is not None else None,
                (self.w * grad).to(w_s.dtype) if self.w is not None else None,
                (self.b * grad).to(b_s.dtype) if self.b is not None and b_s is not None else None)


def _chunk(h_s: Tensor, w_s: Tensor, b_s: Tensor | None, h_t: Tensor, w_t: Tensor, b_t: Tensor | None,
           rows: slice, elementwise: Elementwise, temperature: float, with_grad: bool) -> tuple[Tensor, Tensor | None]:
    """The summed divergence of one chunk of rows and, with_grad, its gradient for the student's logits."""
    with torch.no_grad():
        t = _logits(h_t[rows], w_t, b_t)
        s = _logits(h_s[rows], w_s, b_s)
    if not with_grad:
        return divergence_per_position(elementwise, s, t, temperature).sum(), None
    with torch.enable_grad():
        s.requires_grad_(True)
        value = divergence_per_position(elementwise, s, t, temperature).sum()
        (g,) = torch.autograd.grad(value, s)
    return value.detach(), g


class _FusedHeadDivergence(torch.autograd.Function):
    """sum over rows of the divergence between the heads' logits; inputs (P, H) rows already selected. `eager`:
    the forward pass computes the gradients as it goes (P x H + V x H floats kept) and the backward pass only
    scales them; otherwise the backward pass computes each chunk's logits again."""

    @staticmethod
    def forward(ctx: Any, h_s: Tensor, w_s: Tensor, b_s: Tensor | None, h_t: Tensor, w_t: Tensor,
                b_t: Tensor | None, elementwise: Elementwise, temperature: float, chunk: int,
                eager: bool) -> Tensor:
        grads = _Grads(h_s, w_s, b_s, ctx.needs_input_grad) if eager else None
        total = torch.zeros((), dtype=_accumulator(h_s.dtype), device=h_s.device)
        for start in range(0, h_s.shape[0], chunk):
            rows = slice(start, start + chunk)
            value, g = _chunk(h_s, w_s, b_s, h_t, w_t, b_t, rows, elementwise, temperature, eager)
            total = total + value.to(total.dtype)
            if grads is not None and g is not None:
                grads.add(rows, g, h_s, w_s)
        ctx.save_for_backward(h_s, w_s, b_s, h_t, w_t, b_t)
        ctx.elementwise, ctx.temperature, ctx.chunk, ctx.grads = elementwise, temperature, chunk, grads
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        h_s, w_s, b_s, h_t, w_t, b_t = ctx.saved_tensors
        grads = ctx.grads
        if grads is None:
            grads = _Grads(h_s, w_s, b_s, ctx.needs_input_grad)
            for start in range(0, h_s.shape[0], ctx.chunk):
                rows = slice(start, start + ctx.chunk)
                _value, g = _chunk(h_s, w_s, b_s, h_t, w_t, b_t, rows, ctx.elementwise, ctx.temperature, True)
                assert g is not None
                grads.add(rows, g, h_s, w_s)
        ctx.grads = None
        return (*grads.scaled(grad, w_s, b_s), None, None, None, None, None, None, None)


def _weight_bias(head: nn.Module | Tensor) -> tuple[Tensor, Tensor | None]:
    if isinstance(head, Tensor):
        return head, None
    weight = getattr(head, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise ValueError(f"a head must be a (V, H) weight tensor or a module with .weight (nn.Linear), got "
                         f"{type(head).__name__}")
    return weight, getattr(head, "bias", None)


def fused_head_divergence(divergence: TokenDivergence, student_hidden: Tensor, student_head: nn.Module | Tensor,
                          teacher_hidden: Tensor, teacher_head: nn.Module | Tensor, target: Tensor | None = None,
                          mask: Tensor | None = None, chunk_size: int = 1024, recompute: bool = False) -> Tensor:
    """``divergence(student_head(student_hidden), teacher_head(teacher_hidden), target, mask)`` without the two
    (..., V) logits: hidden states (..., H_s) and (..., H_t), heads as nn.Linear (bias or not) or (V, H) weights;
    `chunk_size` tokens at a time. Valid positions as for the divergence (mask, else target >= 0, else all).
    The gradients are computed during the forward pass when grad mode is on and an input needs them;
    `recompute=True` computes the logits again in the backward pass instead (slower, see the module docstring)."""
    if not isinstance(divergence, TokenDivergence):
        raise ValueError(f"fused_head_divergence needs a token divergence (forward_kl, reverse_kl, jsd, tv), got "
                         f"{type(divergence).__name__}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    w_s, b_s = _weight_bias(student_head)
    w_t, b_t = _weight_bias(teacher_head)
    if w_s.shape[0] != w_t.shape[0] or student_hidden.shape[:-1] != teacher_hidden.shape[:-1]:
        raise ValueError(f"student and teacher must predict the same vocabulary at the same positions: heads "
                         f"{tuple(w_s.shape)} and {tuple(w_t.shape)}, hidden states {tuple(student_hidden.shape)} "
                         f"and {tuple(teacher_hidden.shape)}")
    valid = token_mask(student_hidden, target, mask)
    if not bool(valid.any()):
        return student_hidden.sum() * 0.0 + w_s.sum() * 0.0
    h_s, h_t = student_hidden[valid], teacher_hidden[valid].detach()
    wants_grad = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (h_s, w_s, b_s))
    total = _FusedHeadDivergence.apply(h_s, w_s, b_s, h_t, w_t.detach(), b_t.detach() if b_t is not None else None,
                                       divergence.elementwise, divergence.T, int(chunk_size),
                                       wants_grad and not recompute)
    scale = divergence.T ** 2 if divergence.temperature_squared else 1.0
    return total * (scale / h_s.shape[0])


__all__ = ["fused_head_divergence"]
