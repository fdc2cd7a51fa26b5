"""Self-attention value-relation transfer (MiniLM, Wang et al. 2020, *MiniLM: Deep Self-Attention Distillation for
Task-Agnostic Compression of Pre-Trained Transformers*, eq. 4-5):

    VR_l^h = softmax( V_l^h (V_l^h)^T / sqrt(d_h) )          (T x T, rows over the real key tokens)
    L = 1/|M| * sum_{(i, m(i)) in M} 1/(H * T_real) * sum_h sum_{a real} KL( VR^T_{m(i),h,a} || VR^S_{i,h,a} )

The relation compares the values of every pair of tokens, so the student's head size may differ from the teacher's;
the number of heads must match. MiniLM distils the last layer only, the default here (``layer_map: last``); any
layer map of :mod:`kdkit.losses.layer_map` works. MiniLM adds the same KL over attention distributions; combine with
``attention_kd`` for TinyBERT's score MSE. Reads the ``kd_values`` and ``kd_mask`` tap points of ``hf:`` models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from kdkit.losses.attention_kd import check_heads
from kdkit.losses.layer_map import LayerLoss, LayerLossOptions, check_aligned


def value_relation_log(values: Tensor, mask: Tensor) -> Tensor:
    """(N, H, T, d) values and (N, T) mask -> (N, H, T, T) log VR, padded keys excluded from the softmax."""
    scores = values @ values.transpose(-1, -2) / math.sqrt(values.shape[-1])
    scores = scores.masked_fill(mask[:, None, None, :] < 0.5, torch.finfo(scores.dtype).min)
    return torch.log_softmax(scores, dim=-1)


class ValueRelation(LayerLoss):
    """KL(teacher value relation || student value relation), over heads and real query tokens."""

    default_key = ("kd_values", "kd_mask")
    default_map = "last"
    loss_name = "value_relation"

    def __init__(self, layer_map: Any = None) -> None:
        super().__init__(layer_map)

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor], target: Tensor | None = None) -> Tensor:
        (vs, mask), (vt, _) = student[:2], teacher[:2]
        check_aligned(vs, vt, self.loss_name)
        check_heads(vs, vt, self.loss_name)
        rows = mask[:, None, :].to(vs.dtype)  # (N, 1, T): real query tokens
        denominator = (rows.sum() * vs.shape[2]).clamp(min=1.0)
        total = vs.new_zeros(())
        pairs = self.pairs(vs.shape[1], vt.shape[1])
        for s, t in pairs:
            log_s, log_t = value_relation_log(vs[:, s - 1], mask), value_relation_log(vt[:, t - 1], mask)
            keys = mask[:, None, None, :].to(vs.dtype)  # padded keys have probability 0 in both
            kl = (log_t.exp() * (log_t - log_s) * keys).sum(-1)  # (N, H, T)
            total = total + (kl * rows).sum() / denominator
        return total / len(pairs)


class ValueRelationOptions(LayerLossOptions):
    """`{name: value_relation, ...}` in distill.losses: the keys of :class:`ValueRelation`."""

    name: Literal["value_relation"] = "value_relation"
    loss = ValueRelation
