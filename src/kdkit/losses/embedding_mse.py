"""Embedding-layer distillation (TinyBERT, Jiao et al. 2020, eq. 9):

    L = MSE_mask( E^S W_e , E^T )

E^S (N, T, D_s) and E^T (N, T, D_t) are the outputs of the two models' embedding layers (word + position + type
embeddings after their LayerNorm: index 0 of the ``kd_hidden`` tap point of ``hf:`` text models); W_e is a learned
D_s x D_t projection, created only when the widths differ. MSE_mask is the mean squared error over the real tokens
and the features. Both models must share a tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from kdkit.losses.layer_map import LayerLoss, Projection, check_aligned, masked_mse
from kdkit.losses.registry import LossOptions


class EmbeddingMSE(LayerLoss):
    """Masked MSE between the (projected) student and teacher embedding outputs."""

    default_key = ("kd_hidden", "kd_mask")
    needs_adapter = True
    loss_name = "embedding_mse"

    def __init__(self) -> None:
        super().__init__("last")  # the layer map is only checked for the models' being hf: text models

    def adapter_for(self, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> nn.Module | None:
        """W_h when the student's width differs from the teacher's."""
        return Projection.when_widths_differ(student, teacher)

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor], target: Tensor | None = None) -> Tensor:
        (hs, mask), (ht, _) = student[:2], teacher[:2]
        check_aligned(hs, ht, self.loss_name)
        return masked_mse(hs[:, 0], ht[:, 0], mask)


class EmbeddingMSEOptions(LossOptions):
    """`{name: embedding_mse, ...}` in distill.losses: the keys of :class:`EmbeddingMSE`."""

    name: Literal["embedding_mse"] = "embedding_mse"
    loss = EmbeddingMSE
