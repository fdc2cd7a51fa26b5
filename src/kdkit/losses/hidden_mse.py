"""Hidden-state distillation with a layer map (TinyBERT, Jiao et al. 2020, *TinyBERT: Distilling BERT for Natural
Language Understanding*, eq. 8):

    L = 1/|M| * sum_{(i, m(i)) in M} MSE_mask( H^S_i W_h , H^T_{m(i)} )

H^S_i (N, T, D_s) is the output of student layer i, H^T_{m(i)} (N, T, D_t) that of the teacher layer it learns from
(:mod:`kdkit.losses.layer_map`: uniform m(i) = round(i * L_t / L_s) by default, or explicit pairs). W_h is a learned
D_s x D_t projection, created (as the term's adapter) only when the widths differ. MSE_mask is the mean squared
error over the real tokens and the features (padding left out). TinyBERT sums over layers; the mean keeps one weight
meaningful for any number of layers. Reads the ``kd_hidden`` and ``kd_mask`` tap points of ``hf:`` text models,
which must share a tokenizer (the student is usually built from the teacher, ``keep_layers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor, nn

from kdkit.losses.layer_map import LayerLoss, LayerLossOptions, Projection, check_aligned, masked_mse


class HiddenStateMSE(LayerLoss):
    """Masked MSE between mapped student and teacher layer outputs, through a projection when widths differ."""

    default_key = ("kd_hidden", "kd_mask")
    needs_adapter = True
    loss_name = "hidden_mse"

    def __init__(self, layer_map: Any = None) -> None:
        super().__init__(layer_map)

    def adapter_for(self, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> nn.Module | None:
        """W_h when the student's width differs from the teacher's."""
        return Projection.when_widths_differ(student, teacher)

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor], target: Tensor | None = None) -> Tensor:
        (hs, mask), (ht, _) = student[:2], teacher[:2]
        check_aligned(hs, ht, self.loss_name)
        pairs = self.pairs(hs.shape[1] - 1, ht.shape[1] - 1)  # index 0 is the embedding output
        return sum(masked_mse(hs[:, s], ht[:, t], mask) for s, t in pairs) / len(pairs)


class HiddenStateMSEOptions(LayerLossOptions):
    """`{name: hidden_mse, ...}` in distill.losses: the keys of :class:`HiddenStateMSE`."""

    name: Literal["hidden_mse"] = "hidden_mse"
    loss = HiddenStateMSE
