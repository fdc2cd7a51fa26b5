"""Forward KL per token, KL(teacher || student): the student covers every token the teacher finds likely
(mean-seeking). Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"; per token as word-level KD in
Kim & Rush 2016, "Sequence-Level Knowledge Distillation".

    L = T^2 * mean_{valid i} sum_v p_t(v) * (log p_t(v) - log p_s(v)),   p = softmax(logits_i / T)

Unlike ``token_kd`` it has no label term (add a ``ce`` term) and takes ``chunk_size`` (see token_divergence.py).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from kdkit.losses.token_divergence import TokenDivergence, TokenDivergenceOptions, plogratio


def forward_kl_terms(log_t: Tensor, log_s: Tensor) -> Tensor:
    """p_t * (log p_t - log p_s), elementwise (0 where p_t = 0; +inf where p_t > 0 = p_s)."""
    return plogratio(log_t, log_s)


class ForwardKL(TokenDivergence):
    """T^2 * mean over valid tokens of KL(p_t^T || p_s^T)."""

    name = "forward_kl"

    def elementwise(self, log_t: Tensor, log_s: Tensor) -> Tensor:
        return forward_kl_terms(log_t, log_s)


__all__ = ["ForwardKL", "forward_kl_terms"]


class ForwardKLOptions(TokenDivergenceOptions):
    """`{name: forward_kl, ...}` in distill.losses: the keys of :class:`ForwardKL`."""

    name: Literal["forward_kl"] = "forward_kl"
    loss = ForwardKL
