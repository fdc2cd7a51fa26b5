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


DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "tv")


class LMSchemeOptions(SchemeOptions):
    """Base of the language-model schemes: their family, and what `kdkit tune` searches by default."""

    family = LM

    def tune_space(self, losses: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The weight of the token divergence (against ce, when the terms have one)."""
        names = [str(t.get("name")) for t in losses]
        divergence = next((n for n in names if n in DIVERGENCES), None)
        if divergence is None:
            return {}
        return {f"distill.losses.{divergence}.weight": {"low": 0.1, "high": 10.0, "log": True}}


class LMOfflineOptions(LMSchemeOptions):
    """offline (language models): token-level KD on the labelled data with distill.losses (e.g. ce + forward_kl)."""

    name: Literal["offline"] = "offline"


__all__ = ["DIVERGENCES", "LMOfflineOptions", "LMSchemeOptions", "build_divergence", "prompt_lengths"]
