"""Distillation losses: one file per method, each a plain ``nn.Module`` with
``forward(student, teacher, target=None) -> scalar``.

Adding a method = one new file + one line in ``LOSSES``.
"""

from __future__ import annotations

import inspect

from torch import nn

from kdkit.errors import ConfigError
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
from kdkit.losses.reverse_kl import ReverseKL
from kdkit.losses.rkd import RKDAngle, RKDDistance
from kdkit.losses.sp import SimilarityPreserving
from kdkit.losses.token_kd import TokenKD, token_kd_loss
from kdkit.losses.tv import TotalVariation
from kdkit.losses.uld import ULD
from kdkit.losses.value_relation import ValueRelation

LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropy,
    "kd": KDLoss,
    "dkd": DKD,
    "dist": DIST,
    "fitnet": FitNet,
    "at": AttentionTransfer,
    "rkd_distance": RKDDistance,
    "rkd_angle": RKDAngle,
    "sp": SimilarityPreserving,
    "pkt": PKT,
    "fsp": FSP,
    "token_kd": TokenKD,
    "hidden_mse": HiddenStateMSE,  # transformer to transformer (hf: text models): TinyBERT, MiniLM
    "embedding_mse": EmbeddingMSE,
    "attention_kd": AttentionKD,
    "value_relation": ValueRelation,
    "forward_kl": ForwardKL,  # token-level divergences for language models (per token, chunked vocabulary)
    "reverse_kl": ReverseKL,
    "jsd": JSD,
    "tv": TotalVariation,
    "uld": ULD,  # teacher and student of different tokenizers (positions aligned by kdkit.lm.cross_tokenizer)
}


def build_loss(name: str, **kwargs: object) -> nn.Module:
    """Instantiate a registered loss by name; unknown names or arguments give a one-line ConfigError."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'; choose one of: {', '.join(sorted(LOSSES))}")
    cls = LOSSES[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(kwargs) - accepted
    if unknown:
        raise ConfigError(
            f"loss '{name}' got unknown argument(s) {sorted(unknown)}; it accepts: {sorted(accepted) or 'none'}"
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"loss '{name}': {err}") from None


__all__ = [
    "LOSSES", "build_loss", "KDLoss", "kd_loss", "CrossEntropy", "DKD", "DIST", "FitNet", "AttentionTransfer",
    "RKDDistance", "RKDAngle", "SimilarityPreserving", "PKT", "FSP",
    "TokenKD", "token_kd_loss", "HiddenStateMSE", "EmbeddingMSE", "AttentionKD", "ValueRelation",
    "ForwardKL", "ReverseKL", "JSD", "TotalVariation", "ULD",
]
