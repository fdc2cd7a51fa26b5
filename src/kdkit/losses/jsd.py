"""Generalized Jensen-Shannon divergence JSD(beta) per token (Agarwal et al. 2024, "On-Policy Distillation of
Language Models: Learning from Self-Generated Mistakes", GKD). With P = p_t (teacher), Q = p_s (student) and the
mixture M = beta * P + (1 - beta) * Q:

    JSD(beta)(P || Q) = beta * KL(P || M) + (1 - beta) * KL(Q || M)
    L = T^2 * mean_{valid i} JSD(beta)(p_t || p_s),   p = softmax(logits_i / T)

beta = 0.5 is the symmetric Jensen-Shannon divergence (bounded by log 2). Small beta behaves like forward KL and
large beta like reverse KL, both scaled by beta (1 - beta); beta must lie strictly between 0 and 1 (at the ends
the divergence is identically 0: use forward_kl or reverse_kl).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from kdkit.losses.token_divergence import TokenDivergence, TokenDivergenceOptions, plogratio


def jsd_terms(log_t: Tensor, log_s: Tensor, beta: float) -> Tensor:
    """beta p_t (log p_t - log m) + (1 - beta) p_s (log p_s - log m), m = beta p_t + (1 - beta) p_s; 0 where
    p_t = p_s = 0 (the ids masked in both are replaced by 0 before logaddexp, whose gradient is NaN at (-inf, -inf))."""
    either = (log_t.exp() > 0) | (log_s.exp() > 0)
    log_m = torch.logaddexp(torch.where(either, log_t, 0.0) + math.log(beta),
                            torch.where(either, log_s, 0.0) + math.log1p(-beta))
    return beta * plogratio(log_t, log_m) + (1.0 - beta) * plogratio(log_s, log_m)


class JSD(TokenDivergence):
    """T^2 * mean over valid tokens of beta KL(p_t || m) + (1 - beta) KL(p_s || m)."""

    name = "jsd"

    def __init__(self, beta: float = 0.5, T: float = 1.0, chunk_size: int | None = None) -> None:
        super().__init__(T, chunk_size)
        if not 0.0 < beta < 1.0:
            raise ValueError(f"beta must be strictly between 0 and 1 (use forward_kl or reverse_kl at the ends), "
                             f"got {beta}")
        self.beta = float(beta)

    def elementwise(self, log_t: Tensor, log_s: Tensor) -> Tensor:
        return jsd_terms(log_t, log_s, self.beta)


__all__ = ["JSD", "jsd_terms"]


class JSDOptions(TokenDivergenceOptions):
    """`{name: jsd, ...}` in distill.losses: the keys of :class:`JSD`."""

    name: Literal["jsd"] = "jsd"
    beta: float = 0.5
    loss = JSD
