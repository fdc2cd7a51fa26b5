"""Distillation losses: one file per method, each a plain ``nn.Module`` with
``forward(student, teacher, target=None) -> scalar``.

Adding a method = one new file: its options model (a :class:`~kdkit.losses.registry.LossOptions` subclass) registers
it by name (see kdkit.losses.registry).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from kdkit.losses.at import AttentionTransfer
from kdkit.losses.attention_kd import AttentionKD
from kdkit.losses.ce import CrossEntropy
from kdkit.losses.dist import DIST
from kdkit.losses.dkd import DKD
from kdkit.losses.embedding_mse import EmbeddingMSE
from kdkit.losses.fitnet import FitNet
from kdkit.losses.forward_kl import ForwardKL
from kdkit.losses.fsp import FSP
from kdkit.losses.hidden_mse import HiddenStateMSE
from kdkit.losses.jsd import JSD
from kdkit.losses.kd import KDLoss, kd_loss
from kdkit.losses.pkt import PKT
from kdkit.losses.registry import LossOptions, LossView, build_loss, loss_classes, loss_options
from kdkit.losses.reverse_kl import ReverseKL
from kdkit.losses.rkd import RKDAngle, RKDDistance
from kdkit.losses.sp import SimilarityPreserving
from kdkit.losses.token_kd import TokenKD, token_kd_loss
from kdkit.losses.tv import TotalVariation
from kdkit.losses.uld import ULD
from kdkit.losses.value_relation import ValueRelation

LOSSES: Mapping[str, type[nn.Module]] = LossView()  # every registered loss class by name, read-only


__all__ = [
    "LOSSES", "LossOptions", "build_loss", "loss_classes", "loss_options",
    "KDLoss", "kd_loss", "CrossEntropy", "DKD", "DIST", "FitNet", "AttentionTransfer",
    "RKDDistance", "RKDAngle", "SimilarityPreserving", "PKT", "FSP",
    "TokenKD", "token_kd_loss", "HiddenStateMSE", "EmbeddingMSE", "AttentionKD", "ValueRelation",
    "ForwardKL", "ReverseKL", "JSD", "TotalVariation", "ULD",
]
