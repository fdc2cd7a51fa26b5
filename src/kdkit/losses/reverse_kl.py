"""Reverse KL per token, KL(student || teacher): the student puts its mass where the teacher's is and may drop
low-probability modes (mode-seeking). Gu et al. 2024, "MiniLLM: Knowledge Distillation of Large Language Models";
Agarwal et al. 2024, "On-Policy Distillation of Language Models" (GKD), who pair it with on-policy samples.

    L = T^2 * mean_{valid i} sum_v p_s(v) * (log p_s(v) - log p_t(v)),   p = softmax(logits_i / T)
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from kdkit.losses.token_divergence import TokenDivergence, TokenDivergenceOptions, plogratio


def reverse_kl_terms(log_t: Tensor, log_s: Tensor) -> Tensor:
    """p_s * (log p_s - log p_t), elementwise (0 where p_s = 0; +inf where p_s > 0 = p_t)."""
    return plogratio(log_s, log_t)


class ReverseKL(TokenDivergence):
    """T^2 * mean over valid tokens of KL(p_s^T || p_t^T)."""

    name = "reverse_kl"

    def elementwise(self, log_t: Tensor, log_s: Tensor) -> Tensor:
        return reverse_kl_terms(log_t, log_s)


__all__ = ["ReverseKL", "reverse_kl_terms"]


class ReverseKLOptions(TokenDivergenceOptions):
    """`{name: reverse_kl, ...}` in distill.losses: the keys of :class:`ReverseKL`."""

    name: Literal["reverse_kl"] = "reverse_kl"
    loss = ReverseKL
