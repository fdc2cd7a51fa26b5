"""Helpers shared by the language-model schemes: the divergence term by name and the prompt boundary of a batch."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from kdkit.errors import ConfigError
from kdkit.losses import build_loss
from kdkit.losses.token_divergence import TokenDivergence
from kdkit.schemes.registry import LM, SchemeOptions


def build_divergence(divergence: str | TokenDivergence, **options: Any) -> TokenDivergence:
    """forward_kl, reverse_kl, jsd or tv by name (options such as T, beta, chunk_size), or an instance."""
    loss = divergence if isinstance(divergence, TokenDivergence) else build_loss(divergence, **options)
    if not isinstance(loss, TokenDivergence):
        raise ConfigError(f"a language-model scheme needs a token divergence (forward_kl, reverse_kl, jsd, tv), "
                          f"not '{divergence}'")
    return loss


def prompt_lengths(y: Tensor) -> Tensor:
    """Per row, the number of tokens before the first predicted one: the first labelled position + 1 (labels are
    the inputs shifted by one). A row without labels counts as all prompt (its length)."""
    labelled = y >= 0
    first = torch.where(labelled.any(1), labelled.float().argmax(1), torch.full_like(y[:, 0], y.shape[1] - 1))
    return first + 1


class LMOfflineOptions(SchemeOptions):
    """offline (language models): token-level KD on the labelled data with distill.losses (e.g. ce + forward_kl)."""

    name: Literal["offline"] = "offline"
    family = LM


__all__ = ["LMOfflineOptions", "build_divergence", "prompt_lengths"]
