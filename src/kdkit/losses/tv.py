"""Total variation distance per token, a bounded symmetric divergence used for LLM distillation by Wen et al.
2023, "f-Divergence Minimization for Sequence-Level Knowledge Distillation" (f-distill).

    TV(p_t, p_s) = 1/2 * sum_v |p_t(v) - p_s(v)|   (in [0, 1])
    L = mean_{valid i} TV(softmax(t_i / T), softmax(s_i / T))

No T^2 factor: TV is not a KL, and its gradient does not grow as 1/T^2 with the temperature.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from kdkit.losses.token_divergence import TokenDivergence, TokenDivergenceOptions


def tv_terms(log_t: Tensor, log_s: Tensor) -> Tensor:
    """1/2 |p_t - p_s|, elementwise."""
    return 0.5 * (log_t.exp() - log_s.exp()).abs()


class TotalVariation(TokenDivergence):
    """mean over valid tokens of 1/2 sum_v |p_t(v) - p_s(v)|."""

    name = "tv"
    temperature_squared = False

    def elementwise(self, log_t: Tensor, log_s: Tensor) -> Tensor:
        return tv_terms(log_t, log_s)


__all__ = ["TotalVariation", "tv_terms"]


class TotalVariationOptions(TokenDivergenceOptions):
    """`{name: tv, ...}` in distill.losses: the keys of :class:`TotalVariation`."""

    name: Literal["tv"] = "tv"
    loss = TotalVariation
