"""Attention-based distillation (TinyBERT, Jiao et al. 2020, eq. 7):

    A_l^h = Q_l^h (K_l^h)^T / sqrt(d_h)                     (T x T, head h of layer l, before the softmax)
    L = 1/|M| * sum_{(i, m(i)) in M} 1/(H * P) * sum_h sum_{(a, b) real} ( A^S_{i,h,ab} - A^T_{m(i),h,ab} )^2

over the P pairs of real (non-padding) query and key tokens. TinyBERT fits the unnormalised scores rather than the
softmax probabilities (they found it converges faster) and leaves padded positions out, as here. The layer map
(:mod:`kdkit.losses.layer_map`) is uniform by default. The student and the teacher need the same number of heads
(widths may differ: each head's matrix is T x T) and the same tokenizer. Reads the ``kd_queries``, ``kd_keys`` and
``kd_mask`` tap points of ``hf:`` text models (BERT-style self-attention).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor

from kdkit.errors import ModelError
from kdkit.losses.layer_map import LayerLoss, LayerLossOptions, check_aligned


def attention_scores(queries: Tensor, keys: Tensor) -> Tensor:
    """(N, H, T, d) queries and keys -> (N, H, T, T) scores Q K^T / sqrt(d)."""
    return queries @ keys.transpose(-1, -2) / math.sqrt(queries.shape[-1])


def check_heads(student: Tensor, teacher: Tensor, loss: str) -> None:
    if student.shape[2] != teacher.shape[2]:
        raise ModelError(f"{loss} compares attention head by head, but the student has {student.shape[2]} heads and "
                         f"the teacher {teacher.shape[2]}; give the student the teacher's number of heads")


class AttentionKD(LayerLoss):
    """MSE between mapped student and teacher attention scores over real token pairs."""

    default_key = ("kd_queries", "kd_keys", "kd_mask")
    loss_name = "attention_kd"

    def __init__(self, layer_map: Any = None) -> None:
        super().__init__(layer_map)

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor], target: Tensor | None = None) -> Tensor:
        (qs, ks, mask), (qt, kt, _) = student[:3], teacher[:3]
        check_aligned(qs, qt, self.loss_name)
        check_heads(qs, qt, self.loss_name)
        pair = (mask.unsqueeze(2) * mask.unsqueeze(1)).unsqueeze(1).to(qs.dtype)  # (N, 1, T, T): both tokens real
        denominator = (pair.sum() * qs.shape[2]).clamp(min=1.0)
        total = qs.new_zeros(())
        pairs = self.pairs(qs.shape[1], qt.shape[1])
        for s, t in pairs:
            diff = attention_scores(qs[:, s - 1], ks[:, s - 1]) - attention_scores(qt[:, t - 1], kt[:, t - 1])
            total = total + (diff.pow(2) * pair).sum() / denominator
        return total / len(pairs)


class AttentionKDOptions(LayerLossOptions):
    """`{name: attention_kd, ...}` in distill.losses: the keys of :class:`AttentionKD`."""

    name: Literal["attention_kd"] = "attention_kd"
    loss = AttentionKD
